"""Verifiers by name: each scores an extracted answer against one task row."""
from __future__ import annotations

import math

from r1lab.reward_registry import register_verifier


def _as_number(text: str) -> float | None:
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".").removesuffix("%").strip()
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@register_verifier("numeric")
def numeric(predicted: str | None, row: dict) -> float:
    if predicted is None:
        return 0.0
    got, want = _as_number(predicted), _as_number(str(row["answer"]))
    if got is None or want is None:
        return 0.0
    return float(abs(got - want) <= 1e-6 * max(1.0, abs(want)))


@register_verifier("exact")
def exact(predicted: str | None, row: dict) -> float:
    return float(predicted is not None and predicted.strip() == str(row["answer"]).strip())


@register_verifier("reasoning_gym")
def reasoning_gym(predicted: str | None, row: dict) -> float:
    import reasoning_gym as rg

    entry = row["metadata"]["entry"]
    score_fn = rg.get_score_answer_fn(entry["metadata"]["source_dataset"])
    return float(score_fn(predicted, entry))


@register_verifier("math")
def math_equivalence(predicted: str | None, row: dict) -> float:
    from r1lab.rewards.math import verify_answer

    return verify_answer(predicted, str(row["answer"])) if predicted is not None else 0.0
