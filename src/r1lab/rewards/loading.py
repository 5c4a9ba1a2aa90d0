"""Rewards by reference: a registered name, `package.module:function` or `path/to/file.py:function`.

Two contracts, told apart once when the reward is loaded (TRL's is the second):
- per sample: `fn(completion: str, **row) -> float | None`
- batched:    `fn(completions: list[str], **columns: list) -> list[float | None]`, detected by a first
  parameter named `completions` or `prompts`, or by `fn.batched = True`.
Either may be `async def`. None means "not applicable to this sample": it is left out of that reward's
mean and adds nothing to the total.
"""
from __future__ import annotations

import functools
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from r1lab.refs import is_reference, resolve_callable
from r1lab.reward_registry import get_reward

BATCHED_FIRST_PARAMETERS = ("completions", "prompts")


@dataclass(frozen=True)
class Reward:
    key: str  # as the config writes it: "accuracy", "my_rewards.py:brevity", "pkg.mod:fn"
    name: str  # safe for metric keys, TensorBoard tags and file names: "accuracy", "my_rewards.brevity"
    fn: Callable
    batched: bool
    is_async: bool


def metric_name(key: str) -> str:
    """`my/dir/my_rewards.py:fn` -> `my_rewards.fn`, `pkg.mod:fn` -> `mod.fn`; letters, digits, `_ . -` only."""
    if is_reference(key):
        target, _, attr = key.rpartition(":")
        stem = Path(target).stem if target.endswith(".py") or "/" in target else target.rsplit(".", 1)[-1]
        key = f"{stem}.{attr}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def _is_batched(fn: Callable) -> bool:
    if getattr(fn, "batched", None) is not None:
        return bool(fn.batched)
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):  # builtins without a signature: per sample, as before
        return False
    return bool(params) and params[0].name in BATCHED_FIRST_PARAMETERS


def _is_async(fn: Callable) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


@functools.lru_cache(maxsize=None)
def _load(key: str, base_dir: str | None) -> Reward:
    if is_reference(key):
        fn = resolve_callable(key, [base_dir] if base_dir else [])
    else:
        try:
            fn = get_reward(key)
        except KeyError as err:
            raise ValueError(f"{err.args[0]}; or write package.module:function or path/to/file.py:function") from None
    return Reward(key, metric_name(key), fn, _is_batched(fn), _is_async(fn))


def load_reward(key: str, base_dir: str | Path | None = None) -> Reward:
    """The reward `key` names (a file path is looked up beside the recipe `base_dir`, then in the working dir)."""
    return _load(key, str(base_dir) if base_dir else None)


def load_rewards(keys, base_dir: str | Path | None = None) -> dict[str, Reward]:
    """Every reward in `keys`, resolved and checked up front: a run never starts with one it cannot call."""
    rewards: dict[str, Reward] = {}
    names: dict[str, str] = {}
    for key in keys:
        try:
            reward = load_reward(key, base_dir)
        except ValueError as err:
            raise ValueError(f"rewards.{key}: {err}") from None
        if reward.name in names:
            raise ValueError(f"rewards: {names[reward.name]!r} and {key!r} would both log as reward/{reward.name}; "
                             "rename one function")
        names[reward.name] = key
        rewards[key] = reward
    return rewards
