"""The step-0 measurement of where thinking pays (r1lab.eval.thinking_pays): prefills, scoring, intervals."""
import re

import pytest

from r1lab.data import TaskConfig, load_task
from r1lab.data.prompts import PromptConfig
from r1lab.eval.metrics import difference_interval
from r1lab.eval.thinking_pays import (ANSWER_NOW, TABLE_HEAD, ThinkingPaysConfig, measure_level, parse_level,
                                      table_row, thinking_gain, worked_steps)
from r1lab.rewards import get_reward
from r1lab.rollout.base import Completion


@pytest.mark.parametrize("question, steps", [
    ("State the final answer to the following arithmetic problem: 75 - 32 + 69 =", ["75 - 32 = 43", "43 + 69 = 112"]),
    ("Calculate ( -5 + 1 + 6 ).", ["-5 + 1 = -4", "-4 + 6 = 2"]),
])
def test_worked_steps_write_the_running_results(question, steps):
    assert worked_steps(question) == "<think>\n" + "\n".join(steps) + "\n</think>\n<answer>"


@pytest.mark.parametrize("question", ["Calculate 5 * 1 + 6.", "Calculate 8 / 2 - 1.", "How many r in strawberry?"])
def test_worked_steps_refuse_what_is_not_a_chain_of_plus_and_minus(question):
    assert worked_steps(question) is None


def test_worked_steps_end_at_the_right_answer_of_real_chain_sum_rows():
    rows = load_task(TaskConfig(name="chain_sum", kwargs={"min_terms": 5, "max_terms": 5, "min_digits": 2,
                                                          "max_digits": 2}, train_size=8, test_size=8, seed=0)).test
    for row in rows:
        last = worked_steps(row["question"]).split("</think>")[0].strip().splitlines()[-1]
        assert get_reward("accuracy")(f"<answer>{last.split('= ')[-1]}</answer>", **row) == 1.0


@pytest.mark.parametrize("level", ["chain_sum:3", "sudoku:3:1", "chain_sum:three:1"])
def test_a_bad_level_is_refused_with_the_expected_form(level):
    with pytest.raises(ValueError, match=re.escape(level) + ".*task:a:b"):
        ThinkingPaysConfig(levels=[level])


def test_levels_map_to_reasoning_gym_kwargs():
    assert parse_level("chain_sum:4:2") == ("chain_sum", {"min_terms": 4, "max_terms": 4, "min_digits": 2,
                                                          "max_digits": 2})
    assert parse_level("countdown:3:0") == ("countdown", {"min_numbers": 3, "max_numbers": 3})


def test_difference_interval_matches_newcombes_worked_example():
    gap, low, high = difference_interval(56, 70, 48, 80)  # Newcombe (1998), example (a), method 10
    assert gap == pytest.approx(0.2)
    assert (low, high) == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))
    assert difference_interval(0, 48, 0, 48)[1] < 0 < difference_interval(0, 48, 0, 48)[2]  # not a point at 0/0


class ScriptedEngine:
    """Answers right when the prompt ends at a prefilled `<answer>`, thinks its way to a wrong one otherwise."""

    def __init__(self, tokenizer, answers: dict[str, str]):
        self.tokenizer, self.answers, self.calls = tokenizer, answers, []

    def generate(self, prompts, params, seeds=None):
        self.calls.append((len(prompts), params.max_new_tokens))
        out = []
        for ids in prompts:
            text = self.tokenizer.decode(ids)
            answer = next(a for q, a in self.answers.items() if q in text)
            reply = answer if text.endswith("<answer>") else " so it is</think><answer>-999</answer>"
            out.append(Completion(prompt_ids=ids, token_ids=[1] * len(reply), text=reply, finish_reason="stop"))
        return out


def test_measure_level_scores_each_prefill_on_the_same_prompts(tokenizer):
    cfg = ThinkingPaysConfig(levels=["chain_sum:3:1"], prompts=4, samples=2, max_new_tokens=40)
    rows = load_task(TaskConfig(name="chain_sum", kwargs=parse_level("chain_sum:3:1")[1], train_size=4,
                                test_size=4, seed=0)).test
    engine = ScriptedEngine(tokenizer, {r["question"]: r["answer"] for r in rows})
    record = measure_level(engine, tokenizer, PromptConfig(style="zero"), "chain_sum:3:1", cfg)
    counts = record["counts"]
    assert counts["answer now"] == counts["worked steps"] == [8, 8]
    assert counts["think"] == [0, 8]
    assert sorted(engine.calls) == [(8, 16), (8, 16), (8, 40)]  # forced answers get 16 tokens, thinking the budget
    gap, low, high = thinking_gain(record)
    assert gap == -1.0 and high < 0
    row = table_row(record)
    assert row.startswith("| chain_sum | 3:1 | 8/8 = 1.00") and row.count("|") == TABLE_HEAD[0].count("|")
    assert ANSWER_NOW.endswith("<answer>")


def test_measure_level_marks_worked_steps_not_applicable_off_chains(tokenizer):
    cfg = ThinkingPaysConfig(levels=["countdown:3:0"], prompts=2, samples=1, max_new_tokens=8)
    rows = load_task(TaskConfig(name="countdown", kwargs=parse_level("countdown:3:0")[1], train_size=2,
                                test_size=2, seed=0)).test
    engine = ScriptedEngine(tokenizer, {r["question"]: "1" for r in rows})
    record = measure_level(engine, tokenizer, PromptConfig(style="zero"), "countdown:3:0", cfg)
    assert record["counts"]["worked steps"] is None and "n/a" in table_row(record)
