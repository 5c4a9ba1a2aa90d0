"""Scorer sanity: each benchmark's gold solutions, fed in as completions, must score >= 99%.

A lower rate means the extraction or the verifier would mark right answers wrong, and every
reported number would be biased down by that much.
"""
import pytest

from r1lab.eval.benchmarks import BenchmarkSpec, load_benchmark
from r1lab.eval.harness import score_completion
from r1lab.rewards import get_verifier, register_verifier


def _rate(rows, completion_of):
    return sum(score_completion(completion_of(row), row)[1] >= 1.0 for row in rows) / len(rows)


def test_gsm8k_reference_solutions_score_correct():
    rows = load_benchmark(BenchmarkSpec("gsm8k"))
    assert _rate(rows, lambda r: r["metadata"]["solution"]) >= 0.99  # "... #### 18"


def test_math500_reference_solutions_score_correct():
    rows = load_benchmark(BenchmarkSpec("math500"))
    assert _rate(rows, lambda r: r["metadata"]["solution"]) >= 0.99  # each ends in \boxed{answer}


def test_aime24_reference_solutions_in_r1_shape_score_correct():
    # The bundled AIME solutions are forum prose (one has no \boxed, one boxes "\textbf{(073)}"), so the
    # gold reply is the solution as reasoning followed by the boxed gold answer, as R1 writes it.
    rows = load_benchmark(BenchmarkSpec("aime24"))
    rate = _rate(rows, lambda r: f"<think>\n{r['metadata']['solution']}\n</think>\nThe answer is \\boxed{{{r['answer']}}}.")
    assert rate >= 0.99


def test_reasoning_gym_gold_answers_score_correct():
    rows = load_benchmark(BenchmarkSpec("chain_sum", limit=50))
    assert _rate(rows, lambda r: f"<think>\nadd them up\n</think>\n<answer>{r['answer']}</answer>") >= 0.99


def _humaneval_rate(limit):
    rows = load_benchmark(BenchmarkSpec("humaneval", limit=limit))
    return _rate(rows, lambda r: f"<think>\n</think>\n```python\n{r['answer']}```")


def test_humaneval_canonical_solutions_pass_their_tests_first_20():
    assert _humaneval_rate(20) >= 0.99


@pytest.mark.slow  # 164 sandboxed programs: about a minute on 2 busy cores
def test_humaneval_canonical_solutions_pass_their_tests():
    assert _humaneval_rate(0) >= 0.99


def test_wrong_answers_score_zero_so_the_sanity_checks_can_fail():
    rows = load_benchmark(BenchmarkSpec("gsm8k", limit=20))
    assert _rate(rows, lambda r: f"#### {int(r['answer']) + 1}") == 0.0


def test_strict_extraction_needs_a_marked_answer_and_lenient_takes_the_last_number():
    row = load_benchmark(BenchmarkSpec("gsm8k", limit=1))[0]
    reply = "<think>\n16 - 3 - 4 = 9 eggs, 9 * 2 = 18\n</think>\nShe makes 18 dollars."
    assert score_completion(reply, row)[:2] == (None, 0.0)
    assert score_completion(reply, row, lenient=True)[:2] == ("18", 1.0)


def test_a_verifier_that_raises_scores_zero_and_reports_the_error():
    @register_verifier("test_eval_always_raises")
    def broken(predicted, row):
        raise RuntimeError("boom")

    answer, score, error = score_completion("\\boxed{1}", {"answer": "1", "verifier": "test_eval_always_raises"})
    assert (answer, score, error) == ("1", 0.0, "RuntimeError: boom")
