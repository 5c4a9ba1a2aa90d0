"""Math answer equivalence with math-verify."""
from __future__ import annotations

from r1lab.rewards.extract import extract_answer


def _wrap(answer: str) -> str:
    return answer if "$" in answer or "\\boxed" in answer else f"${answer}$"


def verify_answer(predicted: str, gold: str) -> float:
    """1.0 if `predicted` is mathematically equivalent to `gold` (argument order matters upstream)."""
    from math_verify import parse, verify as mv_verify

    gold_parsed = parse(_wrap(gold), parsing_timeout=None)
    pred_parsed = parse(_wrap(predicted), parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return 0.0
    return float(mv_verify(gold_parsed, pred_parsed, timeout_seconds=None))


def verify(completion: str, answer: str) -> float:
    """Score a whole reply against a gold answer: extract its final answer, then compare."""
    predicted = extract_answer(completion, fallback_last_number=True)
    return verify_answer(predicted, answer) if predicted is not None else 0.0
