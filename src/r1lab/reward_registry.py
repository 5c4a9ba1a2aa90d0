"""Rewards and verifiers, registered by name (the registry sits below data: a user's task may register a
row's verifier function while its rows are built; the built-in rewards register in `r1lab.rewards`).

A reward is a plain function `(completion: str, **row) -> float`; `completion` is the whole reply
(prefill included), `row` the task row (question, answer, verifier, metadata). A verifier scores an
already-extracted answer for one row: `(predicted: str | None, row) -> float`; rows name theirs, by a
registered name or a `module:function` / `file.py:function` reference. Rewards from the user's own
files (and the batched contract) are loaded by `rewards.loading`.
"""
from __future__ import annotations

from typing import Callable

from r1lab.refs import is_reference, resolve_callable

RewardFn = Callable[..., float]
VerifierFn = Callable[[str | None, dict], float]

_REWARDS: dict[str, RewardFn] = {}
_VERIFIERS: dict[str, VerifierFn] = {}


def register_reward(name: str):
    def decorate(fn: RewardFn) -> RewardFn:
        _REWARDS[name] = fn
        return fn
    return decorate


def register_verifier(name: str):
    def decorate(fn: VerifierFn) -> VerifierFn:
        _VERIFIERS[name] = fn
        return fn
    return decorate


def get_reward(name: str) -> RewardFn:
    if name not in _REWARDS:
        raise KeyError(f"unknown reward {name!r}; registered: {', '.join(sorted(_REWARDS))}")
    return _REWARDS[name]


def get_verifier(name: str) -> VerifierFn:
    if name not in _VERIFIERS and is_reference(name):
        return resolve_callable(name)
    if name not in _VERIFIERS:
        raise KeyError(f"unknown verifier {name!r}; registered: {', '.join(sorted(_VERIFIERS))}")
    return _VERIFIERS[name]


def reward_names() -> list[str]:
    return sorted(_REWARDS)
