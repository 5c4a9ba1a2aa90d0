"""Score a batch with weighted rewards, in parallel; a reward that raises or times out scores 0 and is counted."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from r1lab.rewards.registry import get_reward


@dataclass
class RewardBatch:
    total: list[float]  # weighted sum per completion
    per_reward: dict[str, list[float]]  # unweighted score of each reward function
    failures: dict[str, int] = field(default_factory=dict)  # exceptions + timeouts per reward


def _safe(fn, completion: str, row: dict) -> tuple[float, bool]:
    try:
        value = float(fn(completion, **row))
        return value, False
    except Exception:  # a broken reward must never kill a run; it is counted instead
        return 0.0, True


def score_batch(completions: list[str], rows: list[dict], weights: dict[str, float],
                max_workers: int = 4, timeout: float = 30.0) -> RewardBatch:
    if len(completions) != len(rows):
        raise ValueError(f"{len(completions)} completions but {len(rows)} rows")
    fns = {name: get_reward(name) for name in weights}
    per = {name: [0.0] * len(completions) for name in fns}
    failures = {name: 0 for name in fns}
    pool = ThreadPoolExecutor(max_workers=max_workers)
    try:
        jobs = {(name, i): pool.submit(_safe, fn, c, r)
                for name, fn in fns.items() for i, (c, r) in enumerate(zip(completions, rows))}
        for (name, i), job in jobs.items():
            try:
                value, failed = job.result(timeout=timeout)
            except FutureTimeout:
                value, failed = 0.0, True
            per[name][i] = value
            failures[name] += failed
    finally:
        # Not `with`: its exit would wait for a hung reward thread, and a hang must not stop the run.
        pool.shutdown(wait=False, cancel_futures=True)
    total = [sum(weights[n] * per[n][i] for n in fns) for i in range(len(completions))]
    return RewardBatch(total, per, failures)
