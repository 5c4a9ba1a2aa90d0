"""Math verification: extraction, equivalence classes math-verify must accept, and upstream false positives."""
import logging
import threading
import time

import pytest

from r1lab.rewards import get_reward, score_batch
from r1lab.rewards.math import MathVerifierPool, equivalent, verify, verify_answer


@pytest.mark.parametrize("completion, gold", [
    (r"so the answer is \boxed{\frac{1}{2}}", "0.5"),
    (r"first \boxed{3}, then corrected: \boxed{\frac{\sqrt{2}}{2}}", r"\frac{\sqrt2}{2}"),  # last box, nested braces
    ("<think>2+2</think><answer>4</answer>", "4"),
    ("She pays 5 * 3 = 15.\n#### 15", "15"),
    ("after all that, it comes to 1,234 apples", "1234"),  # a final number
    ("```python\nprint(6 * 7)\n```\nwhich prints 42", "42"),  # a code block is not a math answer
    (r"\boxed{50\%}", "0.5"),
    (r"\boxed{30^\circ}", "30"),
    (r"\boxed{10\text{ cm}}", "10"),
    (r"\boxed{(1, 2]}", "(1,2]"),
    (r"\boxed{\{3, 1, 2\}}", r"\{1,2,3\}"),
    (r"\boxed{(1, -2)}", "(1,-2)"),
    (r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
    (r"\boxed{x=3}", "3"),
    (r"\boxed{3}", "x=3"),
    (r"\boxed{y = 2x + 1}", "y=1+2x"),
    (r"\boxed{\dfrac{14}{3}}", r"\frac{14}{3}"),
    (r"\boxed{\$18.90}", r"\$18.90"),
])
def test_equivalent_answers_verify(completion, gold):
    assert verify(completion, gold) == 1.0


@pytest.mark.parametrize("completion, gold", [
    (r"\boxed{\frac{1}{3}}", "0.333"),
    (r"\boxed{(1, 2)}", "(1,2]"),
    (r"\boxed{(2, 1)}", "(1,2)"),
    (r"\boxed{x=4}", "x=3"),
    (r"\boxed{y=3}", "x=3"),
    ("no answer here at all", "3"),
    (r"\boxed{1000001}", "1000000"),
])
def test_different_answers_do_not_verify(completion, gold):
    assert verify(completion, gold) == 0.0


@pytest.mark.parametrize("predicted, gold", [
    ("0.0000002", "0.0000001"),  # math-verify alone: equal (it rounds to 6 decimals)
    ("0.0000001", "0.0000005"),
    (r"2\times 10^{-9}", r"10^{-9}"),
    ("x - y = 0", "0"),  # undelimited, math-verify alone reads the equation as the number 0
    ("x + y = 3", "3"),  # an equation is not its right-hand side unless the left is one variable
    ("y = 2x + 5", "y = 2x + 1"),  # equations whose right-hand sides differ
    ("a=1, b=3", "a=1, b=2"),
])
def test_known_upstream_false_positives_are_rejected(predicted, gold):
    assert verify_answer(predicted, gold) == 0.0


def test_tiny_numbers_that_are_equal_still_verify():
    assert verify_answer(r"1.5\times 10^{-8}", "0.000000015") == 1.0


def test_gold_goes_first_to_math_verify(monkeypatch):
    import math_verify

    seen = []
    real = math_verify.verify
    monkeypatch.setattr(math_verify, "verify", lambda gold, pred, **kw: seen.append((gold, pred)) or real(gold, pred, **kw))
    assert equivalent(predicted="x=3", gold="3")
    gold_parsed, pred_parsed = seen[0]
    assert gold_parsed[1] == "3" and pred_parsed[1] == "x=3"


def test_garbage_answer_scores_zero_without_killing_the_worker():
    assert verify_answer(r"\frac{{{", "3") == 0.0
    assert verify_answer("3", "3") == 1.0


def test_a_check_past_its_deadline_raises_and_the_pool_recovers():
    pool = MathVerifierPool(max_workers=1)
    assert pool.check("1", "1", timeout=60) is True  # worker started: the deadline below measures the check only
    # 2^(2^(2^25)) has ~10^10 digits: the bignum arithmetic would run for hours, in C, past any signal.
    with pytest.raises(TimeoutError):
        pool.check(r"2^{2^{2^{25}}}", "3", timeout=1.0)
    assert pool.timeouts == 1
    assert pool.check("2", "2", timeout=60) is True  # a fresh worker replaced the killed one


def test_workers_started_from_a_finished_thread_keep_working():
    # Workers die with their parent (PR_SET_PDEATHSIG), which the kernel reads as the starting *thread*.
    pool = MathVerifierPool(max_workers=1)
    starter = threading.Thread(target=pool.check, args=("1", "1", 60))
    starter.start()
    starter.join()
    time.sleep(0.3)
    assert pool.check("2", "2", timeout=60) is True


def test_verify_works_from_threads():
    results = {}

    def worker(i):
        results[i] = verify(rf"\boxed{{{i}}}", str(i))
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: 1.0 for i in range(4)}


def test_no_timeout_warning_is_logged(caplog):
    with caplog.at_level(logging.WARNING):
        assert equivalent("1", "1")
    assert not [r for r in caplog.records if "Timeout is disabled" in r.getMessage()]


def test_accuracy_reward_by_name_in_score_batch():
    rows = [{"answer": r"\frac{1}{2}", "verifier": "math"}] * 2
    batch = score_batch([r"<answer>\boxed{0.5}</answer>", "<answer>7</answer>"], rows, {"accuracy": 2.0})
    assert batch.total == [2.0, 0.0] and batch.failures == {"accuracy": 0}
    assert get_reward("accuracy") is not None


# ---------------------------------------------------------------- Math-Verify's own suite (issue 17)
@pytest.mark.parametrize("gold, predicted", [
    ("(p,q)=(3,2)", "(3,2)"),  # the left side names the value: a tuple of unknowns
    ("|AB|=1", "1"),  # a length
    ("f(x)=1", "1"),  # a function value
    ("V_{1}:V_{2}=11:21", "11:21"),  # a ratio of named quantities
    (r"\frac{NO}{BO}=\frac{1}{\sqrt{6}}", r"\frac{1}{\sqrt{6}}"),
    (r"\frac{10}{9}", r"\frac{1}{2} = \frac{10}{9}"),  # no unknowns on the left: a computation and its result
])
def test_an_equation_whose_left_side_names_the_value_matches_the_value(gold, predicted):
    assert verify_answer(predicted, gold) == 1.0


@pytest.mark.parametrize("gold, predicted", [
    ("x+z=1", "1"),  # a relation between unknowns is not its right-hand side
    ("2x=6", "6"),  # x is 3, not 6
    ("x^2=4", "4"),
    ("1", "x-y=1"),
])
def test_an_equation_relating_unknowns_still_does_not_match_its_right_side(gold, predicted):
    assert verify_answer(predicted, gold) == 0.0


@pytest.mark.parametrize("completion", [
    r"\boxed{1},\boxed{2},\boxed{3}",
    r"\boxed{1} and \boxed{2} and \boxed{3}",
    r"<answer>$\boxed{3} \quad \text{and} \quad \boxed{1}, \boxed{2}$</answer>",
])
def test_several_boxes_in_a_row_answer_together(completion):
    assert verify(completion, r"\{1,2,3\}") == 1.0
    assert verify(completion, "3") == 0.0  # no longer only the last box


def test_a_box_followed_by_a_correction_still_counts_only_the_last():
    assert verify(r"first \boxed{1}, then I check again: \boxed{3}", "3") == 1.0


@pytest.mark.parametrize("predicted, gold, expected", [
    ("1 000", "1000", 1.0),  # read as 1·000 = 0 before
    (r"12\,345", "12345", 1.0),
    ("1 000", "0", 0.0),
    ("1000,99", "1000.99", 1.0),  # a decimal comma, when the other side is a decimal
    ("2,5", "2.6", 0.0),
])
def test_number_notations(predicted, gold, expected):
    assert verify_answer(predicted, gold) == expected


def test_numbers_too_small_for_floats_are_still_told_apart():
    # as floats both are 0.0 (1/2004! ~ 1e-5756); the guard compares in sympy's arbitrary-exponent floats
    assert verify_answer("1/2004!", "1/2006!") == 0.0
    assert verify_answer(r"\frac{1}{2004!}", "1/2004!") == 1.0
