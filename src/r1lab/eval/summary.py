"""Turn the per-sample log into R1's reported numbers. Pure apart from the verifier calls of cons@k."""
from __future__ import annotations

from r1lab.data import Row
from r1lab.eval.metrics import majority_vote, mean_stderr, pass_at_k, wilson_interval
from r1lab.rewards import get_verifier

NO_VOTE_VERIFIERS = ("code",)  # programs are judged by tests, not by agreeing with each other


def _safe_math_equal(a: str, b: str) -> bool:
    from r1lab.rewards.math import verify_answer

    try:
        return verify_answer(a, b) > 0
    except Exception:  # an unparsable answer is simply its own group
        return False


def consensus_correct(answers: list[str | None], row: Row) -> bool | None:
    """Is the majority-vote answer right? None for rows where voting is meaningless (code)."""
    if row.get("verifier") in NO_VOTE_VERIFIERS:
        return None
    votes = [a for a in answers if a is not None]
    if not votes:
        return False
    winner = majority_vote(votes, equal=_safe_math_equal)
    try:
        return get_verifier(row.get("verifier", "math"))(winner, row) >= 1.0
    except Exception:
        return False


def samples_by_question(records: list[dict], k: int) -> dict[str, list[dict]]:
    """Each question's first k samples in sample-index order (a duplicate index keeps its first record)."""
    grouped: dict[str, dict[int, dict]] = {}
    for record in records:
        if record["sample_index"] < k:
            grouped.setdefault(record["question_id"], {}).setdefault(record["sample_index"], record)
    return {q: [s[j] for j in sorted(s)] for q, s in grouped.items()}


def summarize(rows: list[Row], records: list[dict], k: int, lenient: bool = False) -> dict:
    grouped = samples_by_question(records, k)
    scored = [(row, grouped[row["id"]]) for row in rows if row["id"] in grouped]
    if not scored:
        raise ValueError("no samples to summarise")
    counts = [(len(s), sum(bool(x["correct"]) for x in s)) for _, s in scored]
    pass1, pass1_se = mean_stderr([c / n for n, c in counts])
    max_k = min(n for n, _ in counts)
    curve = {str(kk): sum(pass_at_k(n, c, kk) for n, c in counts) / len(counts) for kk in range(1, max_k + 1)}
    votes = [consensus_correct([x["answer"] for x in s], row) for row, s in scored]
    voted = [v for v in votes if v is not None]
    samples = [x for _, s in scored for x in s]
    tokens = sum(x.get("num_tokens", 0) for x in samples)
    seconds = sum(x.get("time_s", 0.0) for x in samples)
    summary = {
        "questions": len(scored),
        "questions_total": len(rows),
        "k": k,
        "samples": len(samples),
        "complete": len(scored) == len(rows) and all(n == k for n, _ in counts),
        "pass@1": pass1,
        "pass@1_stderr": pass1_se,
        "cons@k": sum(voted) / len(voted) if voted else None,
        "cons@k_ci95": list(wilson_interval(sum(voted), len(voted))) if voted else None,
        "pass@k": curve,
        "mean_completion_tokens": tokens / len(samples),
        "truncation_rate": sum(x.get("finish_reason") == "length" for x in samples) / len(samples),
        "answer_rate": sum(x["answer"] is not None for x in samples) / len(samples),
        "scoring_errors": sum(bool(x.get("error")) for x in samples),
        "lenient": lenient,
        "wall_time_s": seconds,
        "tokens_per_s": tokens / seconds if seconds > 0 else None,
    }
    return summary
