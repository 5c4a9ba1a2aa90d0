import math
from fractions import Fraction

import pytest

from r1lab.eval.metrics import majority_vote, mean_stderr, pass_at_k, wilson_interval


@pytest.mark.parametrize("n, c, k, expected", [
    (5, 2, 1, 0.4),  # pass@1 is the fraction correct
    (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
])
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_no_correct_sample_is_zero():
    assert pass_at_k(8, 0, 1) == 0.0
    assert pass_at_k(8, 0, 8) == 0.0


def test_pass_at_k_all_correct_is_one():
    assert pass_at_k(8, 8, 1) == 1.0
    assert pass_at_k(8, 8, 8) == 1.0


def test_pass_at_k_is_one_when_k_exceeds_the_wrong_samples():
    assert pass_at_k(5, 3, 3) == 1.0  # only 2 wrong samples: any 3 include a correct one
    assert pass_at_k(64, 1, 64) == 1.0


def test_pass_at_k_matches_exact_binomials_on_a_grid():
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
                assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12), (n, c, k)


def test_pass_at_k_stays_finite_where_binomials_overflow_floats():
    # C(2000, 1000) has ~600 digits: float(math.comb(...)) would overflow
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("n, c, k", [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(n, c, k)


def test_mean_stderr_hand_computed():
    mean, se = mean_stderr([0.0, 1.0, 1.0, 0.0])
    assert mean == 0.5
    assert se == pytest.approx(math.sqrt((4 * 0.25 / 3) / 4))


def test_mean_stderr_of_one_value_has_no_spread():
    assert mean_stderr([0.25]) == (0.25, 0.0)


def test_wilson_interval_is_not_degenerate_at_zero():
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.2775, abs=1e-4)


def test_wilson_interval_symmetric_at_half():
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))


def test_majority_vote_groups_equivalent_answers_written_differently():
    # three ways of writing one half outvote two identical threes
    assert majority_vote(["3", "1/2", "0.5", "\\frac{1}{2}", "3"]) == "1/2"


def test_majority_vote_counts_a_fraction_and_its_integer_value_together():
    assert majority_vote(["5", "7", "\\frac{14}{2}", "5", "7.0"]) == "7"


def test_majority_vote_tie_goes_to_the_group_seen_first():
    assert majority_vote(["5", "7", "\\frac{14}{2}", "5"]) == "5"
    assert majority_vote(["7", "5", "\\frac{14}{2}", "5"]) == "7"


def test_majority_vote_compares_only_distinct_strings():
    calls = []

    def equal(a, b):
        calls.append((a, b))
        return False

    assert majority_vote(["4", "4", " 4", "9", "9", "9", "9"], equal=equal) == "9"
    assert calls == [("9", "4")]  # identical strings were counted without a comparison


def test_majority_vote_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        majority_vote([])


def test_mean_interval_uses_student_t_for_few_values():
    from r1lab.eval.metrics import mean_difference_interval, mean_interval, t_critical_95

    mean, low, high = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])  # s.e. = sqrt(2.5 / 5)
    assert mean == 3.0 and high - mean == pytest.approx(2.776 * (2.5 / 5) ** 0.5, rel=1e-6) and mean - low == high - mean
    assert mean_interval([7.0]) == (7.0, 7.0, 7.0)
    assert t_critical_95(11) == t_critical_95(10) > t_critical_95(12) and t_critical_95(10_000) == 1.96
    gap, low, high = mean_difference_interval([10.0, 12.0, 14.0], [1.0, 2.0, 3.0])
    assert gap == 10.0 and low > 0 and high - gap == pytest.approx(4.303 * (4 / 3 + 1 / 3) ** 0.5, rel=1e-6)
    with pytest.raises(ValueError, match="df >= 1"):
        t_critical_95(0)
