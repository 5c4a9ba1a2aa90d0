"""R1-Zero's rule rewards: answer accuracy (via the row's verifier) and the think/answer format."""
from __future__ import annotations

import re

from r1lab.rewards.extract import extract_answer
from r1lab.reward_registry import get_verifier, register_reward

_STRICT = re.compile(r"\s*<think>(?:(?!<think>|</think>).)*</think>\s*<answer>(?:(?!<answer>|</answer>).)*</answer>\s*", re.DOTALL)


@register_reward("accuracy")
def accuracy(completion: str, **row) -> float:
    """The answer in <answer> tags or \\boxed{} is right (R1-Zero's accuracy reward)."""
    return get_verifier(row.get("verifier", "math"))(extract_answer(completion), row)


@register_reward("accuracy_lenient")
def accuracy_lenient(completion: str, **row) -> float:
    """As `accuracy`, but an untagged reply is judged by its last number: signal before the format is learnt."""
    return get_verifier(row.get("verifier", "math"))(extract_answer(completion, fallback_last_number=True), row)


@register_reward("format")
def format_strict(completion: str, **row) -> float:
    """1 if the reply is exactly <think>...</think> then <answer>...</answer>, each tag once."""
    once = all(completion.count(tag) == 1 for tag in ("<think>", "</think>", "<answer>", "</answer>"))
    return float(once and _STRICT.fullmatch(completion) is not None)


@register_reward("format_partial")
def format_partial(completion: str, **row) -> float:
    """Partial credit that a small model can climb: 0.5 for an <answer>...</answer> pair, 0.25 for </think>."""
    score = 0.5 if re.search(r"<answer>.*?</answer>", completion, re.DOTALL) else 0.0
    return score + (0.25 if "</think>" in completion else 0.0)
