"""Score a batch with weighted rewards, in parallel threads.

What a reward sees (`reward_rows`): every dataset column of the row (its metadata, flattened), the row
itself (id, question, answer, verifier, metadata), `prompt` (the question) and, from the trainer, the
completion's `completion_ids` and `completion_tokens`. A failure (it raises, times out, returns NaN, a
non-number or, batched, a list of the wrong length) follows `on_error`: "error" stops with a message
naming the reward and the sample, "zero" scores it 0, "skip" leaves it out (like None); the last two
count it in `failures` and warn once. Never a silent 0.
"""
from __future__ import annotations

import asyncio
import logging
import math
import numbers
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path

from r1lab.rewards.loading import Reward, load_rewards, metric_name

ON_ERROR = ("error", "zero", "skip")
RESERVED_ARGUMENTS = ("completion", "completions")  # never passed as columns: they are the reply itself
log = logging.getLogger("r1lab.rewards")
_warned: set[str] = set()


class RewardError(ValueError):
    """A reward failed on a sample under on_error="error"; the message names the reward and the sample."""


@dataclass
class RewardBatch:
    total: list[float]  # weighted sum per completion over the rewards that apply to it
    per_reward: dict[str, list[float | None]]  # unweighted score of each reward; None: not applicable / skipped
    failures: dict[str, int] = field(default_factory=dict)  # failed samples per reward (zero / skip policies)


def reward_rows(rows: list[dict], completion_ids: list[list[int]] | None = None) -> list[dict]:
    out = []
    for i, row in enumerate(rows):
        columns = {k: v for k, v in (row.get("metadata") or {}).items() if k not in RESERVED_ARGUMENTS}
        full = {**columns, **row, "prompt": row.get("question", columns.get("prompt"))}
        if completion_ids is not None:
            full["completion_ids"] = list(completion_ids[i])
            full["completion_tokens"] = len(completion_ids[i])
        out.append(full)
    return out


def _columns(rows: list[dict]) -> dict[str, list]:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return {**{k: [row.get(k) for row in rows] for k in keys}, "prompts": [row.get("prompt") for row in rows]}


async def _gather(coroutines, timeout: float):
    return await asyncio.gather(*(asyncio.wait_for(c, timeout) for c in coroutines), return_exceptions=True)


def _submit(pool, reward: Reward, completions: list[str], rows: list[dict], timeout: float) -> list:
    """Futures: one per sample (sync per-sample), or one holding the whole batch's list."""
    fn = reward.fn
    if reward.batched:
        if reward.is_async:
            return [pool.submit(asyncio.run, asyncio.wait_for(fn(completions=completions, **_columns(rows)), timeout))]
        return [pool.submit(fn, completions=completions, **_columns(rows))]
    if reward.is_async:
        return [pool.submit(asyncio.run, _gather([fn(c, **r) for c, r in zip(completions, rows)], timeout))]
    return [pool.submit(fn, c, **r) for c, r in zip(completions, rows)]


def _describe(err: BaseException) -> str:
    if isinstance(err, (FutureTimeout, asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    return f"raised {type(err).__name__}: {err}"


def _outcomes(reward: Reward, futures: list, n: int, timeout: float) -> list[tuple[object, str | None]]:
    """(value, None) or (None, what went wrong) per sample."""
    if not (reward.batched or reward.is_async):  # one future per sample, each with its own fate
        values = [_result(f, timeout) for f in futures]
        return [(None, _describe(v)) if isinstance(v, BaseException) else _checked(v) for v in values]
    values = _result(futures[0], timeout)
    if isinstance(values, BaseException):  # the batched call, or the async event loop, failed as a whole
        return [(None, _describe(values))] * n
    if reward.batched and (not isinstance(values, (list, tuple)) or len(values) != n):
        got = f"{len(values)} values" if isinstance(values, (list, tuple)) else repr(values)[:60]
        return [(None, f"returned {got} for {n} completions")] * n
    return [(None, _describe(v)) if isinstance(v, BaseException) else _checked(v) for v in values]


def _result(future, timeout: float):
    """The future's value, or the exception it raised (a timeout included)."""
    try:
        return future.result(timeout=timeout)
    except Exception as err:
        return err


def _checked(value) -> tuple[float | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None, f"returned {type(value).__name__} {repr(value)[:60]}, expected a number or None"
    if not math.isfinite(float(value)):
        return None, f"returned {value}"
    return float(value), None


def _apply_policy(reward: Reward, outcomes, rows: list[dict], on_error: str) -> tuple[list[float | None], int]:
    values, failed = [], 0
    for i, (value, problem) in enumerate(outcomes):
        if problem is None:
            values.append(value)
            continue
        message = f"reward {reward.key!r} failed on sample {i} (row id {rows[i].get('id')!r}): {problem}"
        if on_error == "error":
            raise RewardError(message + "; reward_errors: zero or skip scores such samples 0 or leaves them out")
        if reward.key not in _warned:
            _warned.add(reward.key)
            log.warning("%s (scored as %s; failures are counted in reward/%s_failures)", message,
                        "0" if on_error == "zero" else "not applicable", reward.name)
        failed += 1
        values.append(0.0 if on_error == "zero" else None)
    return values, failed


def score_batch(completions: list[str], rows: list[dict], weights: dict[str, float],
                completion_ids: list[list[int]] | None = None, on_error: str = "error",
                base_dir: str | Path | None = None, max_workers: int = 4, timeout: float = 30.0) -> RewardBatch:
    """Each reward in `weights` (names or references, see rewards.loading) on every completion, and their weighted sum."""
    if len(completions) != len(rows):
        raise ValueError(f"{len(completions)} completions but {len(rows)} rows")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {list(ON_ERROR)}, got {on_error!r}")
    rewards = load_rewards(weights, base_dir)
    full_rows = reward_rows(rows, completion_ids)
    pool = ThreadPoolExecutor(max_workers=max_workers)
    try:
        futures = {key: _submit(pool, r, completions, full_rows, timeout) for key, r in rewards.items()}
        per, failures = {}, {}
        for key, reward in rewards.items():
            outcomes = _outcomes(reward, futures[key], len(completions), timeout)
            per[key], failures[key] = _apply_policy(reward, outcomes, full_rows, on_error)
    finally:
        # Not `with`: its exit would wait for a hung reward thread, and a hang must not stop the run.
        pool.shutdown(wait=False, cancel_futures=True)
    total = [sum(weights[k] * per[k][i] for k in rewards if per[k][i] is not None) for i in range(len(completions))]
    return RewardBatch(total, per, failures)


def applicable_mean(values: list[float | None]) -> float:
    """Mean over the samples a reward applies to (0.0 when none does)."""
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else 0.0


def reward_metrics(per_reward: dict[str, list[float | None]], failures: dict[str, int]) -> dict[str, float]:
    """`reward/<name>` (mean), `reward/<name>_std` and `reward/<name>_failures` per reward, names made safe."""
    out = {}
    for key, values in per_reward.items():
        name, kept = metric_name(key), [v for v in values if v is not None]
        mean = applicable_mean(values)
        out[f"reward/{name}"] = mean
        out[f"reward/{name}_std"] = math.sqrt(sum((v - mean) ** 2 for v in kept) / len(kept)) if kept else 0.0
        out[f"reward/{name}_failures"] = float(failures.get(key, 0))
    return out
