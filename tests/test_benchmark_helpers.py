"""The pure helpers of the measurement scripts under benchmarks/ whose output goes into docs/results."""
import importlib.util
from pathlib import Path

import pytest

from r1lab.data import TaskConfig, load_task
from r1lab.precision import cpu_name
from r1lab.rewards import get_reward

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("question, steps", [
    ("State the final answer to the following arithmetic problem: 75 - 32 + 69 =", ["75 - 32 = 43", "43 + 69 = 112"]),
    ("Calculate ( -5 + 1 + 6 ).", ["-5 + 1 = -4", "-4 + 6 = 2"]),
])
def test_worked_steps_write_the_running_results(question, steps):
    prefill = _script("thinking_pays").worked_steps(question)
    assert prefill == "<think>\n" + "\n".join(steps) + "\n</think>\n<answer>"


@pytest.mark.parametrize("question", ["Calculate 5 * 1 + 6.", "Calculate 8 / 2 - 1.", "How many r in strawberry?"])
def test_worked_steps_refuse_what_is_not_a_chain_of_plus_and_minus(question):
    assert _script("thinking_pays").worked_steps(question) is None


def test_worked_steps_end_at_the_right_answer_of_real_chain_sum_rows():
    worked_steps = _script("thinking_pays").worked_steps
    rows = load_task(TaskConfig(name="chain_sum", kwargs={"min_terms": 5, "max_terms": 5, "min_digits": 2,
                                                          "max_digits": 2}, train_size=8, test_size=8, seed=0)).test
    for row in rows:
        last = worked_steps(row["question"]).split("</think>")[0].strip().splitlines()[-1]
        assert get_reward("accuracy")(f"<answer>{last.split('= ')[-1]}</answer>", **row) == 1.0


def test_loss_table_pools_seeds_into_one_interval():
    rl_compare = _script("rl_compare")
    seed0 = [{"step": 0, "eval/accuracy": 0.0, "eval/n": 100.0}, {"step": 9, "eval/accuracy": 0.2, "eval/n": 100.0,
                                                                  "completion/length_mean": 20.0, "entropy": 0.5}]
    seed1 = [{"step": 0, "eval/accuracy": 0.0, "eval/n": 100.0}, {"step": 8, "eval/accuracy": 0.3, "eval/n": 100.0,
                                                                  "completion/length_mean": 30.0, "entropy": 0.7}]
    assert rl_compare.held_out(seed1) == (30, 100)
    row = rl_compare.pooled("cispo", [seed0, seed1])
    assert "50/200 = 0.25 [0.20, 0.31]" in row and "| 25.0 | 0.600 |" in row


def test_cpu_name_says_cores():
    assert f"{len(__import__('os').sched_getaffinity(0))} cores" in cpu_name()
