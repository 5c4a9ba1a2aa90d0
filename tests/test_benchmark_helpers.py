"""The pure helpers of the measurement scripts under benchmarks/ whose output goes into docs/results."""
import importlib.util
from pathlib import Path


from r1lab.precision import cpu_name

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
