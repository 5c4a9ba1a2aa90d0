"""Evaluation estimators as pure functions: pass@k, majority vote (cons@k), mean ± standard error.

pass@k is the unbiased estimator of Chen et al. (2021) that R1 reports; cons@k is the accuracy of
the majority-vote answer, where answers count as the same vote when they are mathematically equal.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k samples drawn without replacement from n is correct), given c correct.

    1 - C(n-c, k) / C(n, k), computed as a running product of (n-c-i)/(n-i) so that neither
    binomial is ever formed: C(64, 32) already overflows a float's exact integer range.
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    miss = 1.0
    for i in range(k):
        miss *= (n - c - i) / (n - i)
    return 1.0 - miss


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std with n-1, over sqrt(n)); stderr is 0 for one value."""
    if not values:
        raise ValueError("mean_stderr of an empty sequence")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


# Two-sided 95% Student t critical values by degrees of freedom: a mean of a few values (a training run's
# per-step means) is wider than ±1.96 s.e. A df between two keys takes the smaller key's (wider) value.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t_critical_95(df: int) -> float:
    if df < 1:
        raise ValueError(f"t_critical_95 needs df >= 1, got {df}")
    return 1.96 if df > max(_T975) else _T975[max(k for k in _T975 if k <= df)]


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and its 95% t interval (a point for one value)."""
    mean, stderr = mean_stderr(values)
    half = t_critical_95(len(values) - 1) * stderr if len(values) > 1 else 0.0
    return mean, mean - half, mean + half


def mean_difference_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """mean(a) − mean(b) and its 95% interval (Welch's standard error; df min(n) − 1, on the wide side)."""
    (mean_a, se_a), (mean_b, se_b) = mean_stderr(a), mean_stderr(b)
    gap, df = mean_a - mean_b, min(len(a), len(b)) - 1
    half = t_critical_95(df) * math.hypot(se_a, se_b) if df >= 1 else 0.0
    return gap, gap - half, gap + half


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; unlike mean ± 1.96·se it stays inside [0, 1]
    and is not degenerate at 0 or 1 successes, which small benchmarks (AIME: 30 questions) hit."""
    if not 0 <= successes <= trials or trials == 0:
        raise ValueError(f"wilson_interval needs 0 <= successes <= trials and trials > 0, got {successes}/{trials}")
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_interval(hits_a: int, n_a: int, hits_b: int, n_b: int, z: float = 1.96) -> tuple[float, float, float]:
    """p_a − p_b and its interval by Newcombe's hybrid score method (from the two Wilson intervals): unlike the
    normal approximation it does not collapse to a point when one side has 0 successes."""
    p_a, p_b = hits_a / n_a, hits_b / n_b
    low_a, high_a = wilson_interval(hits_a, n_a, z)
    low_b, high_b = wilson_interval(hits_b, n_b, z)
    gap = p_a - p_b
    return (gap, gap - math.hypot(p_a - low_a, high_b - p_b), gap + math.hypot(high_a - p_a, p_b - low_b))


def _math_equal(a: str, b: str) -> bool:
    from r1lab.rewards.math import verify_answer

    return verify_answer(a, b) > 0  # b plays the gold: math-verify's argument order matters


def majority_vote(answers: list[str], equal: Callable[[str, str], bool] | None = None) -> str:
    """The most common answer, where answers in one group are mathematically equivalent.

    Identical strings (after stripping) are counted together first, so `equal` (math equivalence by
    default; it can be slow) only compares distinct strings: each joins the first group whose
    representative, its earliest member as written, it equals. The largest group wins; a tie goes to
    the group that appeared first, so the result depends only on the answers' order, which the
    harness fixes by sample index. Returns the winning group's representative.
    """
    if not answers:
        raise ValueError("majority_vote of no answers")
    equal = equal or _math_equal
    distinct: dict[str, int] = {}  # stripped text -> count, in order of first appearance
    first_written: dict[str, str] = {}
    for answer in answers:
        key = answer.strip()
        distinct[key] = distinct.get(key, 0) + 1
        first_written.setdefault(key, answer)
    representatives: list[str] = []
    counts: list[int] = []
    for key, count in distinct.items():
        for g, rep in enumerate(representatives):
            if equal(key, rep.strip()):
                counts[g] += count
                break
        else:
            representatives.append(first_written[key])
            counts.append(count)
    best = max(range(len(counts)), key=lambda g: (counts[g], -g))
    return representatives[best]
