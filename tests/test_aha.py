"""The aha lens on hand-written completions: reflective-phrase counts, stated answers, the answer-change detector."""
import math

import pytest

from r1lab.eval.aha import (DEFAULT_LEXICON, aha_step_metrics, answer_trajectory, is_aha_candidate, normalize_answer,
                            reflection_count)

AHA = "<think>5 + 8 + 8 = 20. Wait, 5 + 8 = 13 and 13 + 8 = 21.</think> <answer>21</answer>"


# ---------------------------------------------------------------------------- lexicon counts
@pytest.mark.parametrize("text, count", [
    ("Wait, let me check that.", 2),
    ("WAIT. Hmmm... hmm", 3),  # case-insensitive; "hmmm" is "hmm" drawn out
    ("I await the result while waiting; the waiter waits.", 0),  # whole words only
    ("Let me double-check: double check, doublecheck.", 3),  # the longer phrase wins, not 2 for the first
    ("Let me re-evaluate, reevaluate and verify. Alternatively, use 7.", 4),
    ("That’s not right.", 1),  # typographic apostrophe
    ("No reflection here: 2 + 2 = 4.", 0),
    ("", 0),
])
def test_reflection_count_english(text, count):
    assert reflection_count(text) == count


@pytest.mark.parametrize("text, count", [
    ("等等，让我检查一下。", 2),
    ("嗯，或者我们验证一下。", 3),
    ("讓我檢查，驗證。", 2),
    ("ちょっと待って、もう一度確認します。", 3),
    ("等等wait", 2),  # CJK needs no word boundary; "wait" after a CJK character still counts
])
def test_reflection_count_cjk(text, count):
    assert reflection_count(text) == count


def test_reflection_count_takes_a_custom_lexicon():
    assert reflection_count("Oops, wait. OOPS.", ["oops"]) == 2
    assert reflection_count("Wait, wait.", []) == 0
    assert "wait" in DEFAULT_LEXICON and "等等" in DEFAULT_LEXICON and "待って" in DEFAULT_LEXICON


# ---------------------------------------------------------------------------- stated answers
@pytest.mark.parametrize("text, answers", [
    ("7 + 5 = 12. Wait, 7 + 6 = 13. <answer>13</answer>", ["12", "13", "13"]),
    ("<answer>\\boxed{12}</answer>", ["\\boxed{12}"]),  # one statement, not two
    ("so \\boxed{\\frac{1}{2}} and then \\boxed{3}", ["\\frac{1}{2}", "3"]),
    ("The answer is 12 because 3 * 4 = 12.", ["12", "12"]),
    ("Final answer: 42", ["42"]),
    ("x = 12 + 3 = 15, and 2 <= 3, a == 4", ["15"]),  # a longer right-hand side, not its first term
    ("Total = 1,234,567.", ["1,234,567"]),
    ("答案是 12。等等，答案是13。", ["12", "13"]),
    ("答えは5です。待って、答えは6。", ["5", "6"]),
    ("I think about it but say nothing.", []),
])
def test_answer_trajectory(text, answers):
    assert answer_trajectory(text) == answers


@pytest.mark.parametrize("a, b", [("\\boxed{12}", "12"), ("12.0", "12"), ("1,234", "1234"), ("$4$", "4"),
                                  ("The answer is 5.", "5"), ("x = 5", "5"), ("Paris", "paris")])
def test_normalize_answer_equates_the_same_answer_written_differently(a, b):
    assert normalize_answer(a) == normalize_answer(b)


def test_normalize_answer_keeps_different_answers_apart():
    assert normalize_answer("12") != normalize_answer("13")
    assert normalize_answer("1.5") != normalize_answer("15")


# ---------------------------------------------------------------------------- the detector
def test_aha_candidate_states_reflects_and_ends_on_a_different_correct_answer():
    assert is_aha_candidate(AHA, correct_final=True)
    assert is_aha_candidate("The answer is 5. Hmm, let me verify: 2 + 4 = 6. The answer is 6.", True)
    assert is_aha_candidate("答案是 12。等等，重新算：答案是13。", True)
    assert is_aha_candidate("So \\boxed{20}. Alternatively, 13 + 8 = 21, so \\boxed{21}", True)


@pytest.mark.parametrize("text, correct", [
    (AHA, False),  # changes its answer, but to a wrong one
    ("5 + 8 + 8 = 21. Wait, let me check: 5 + 8 = 13, 13 + 8 = 21. <answer>21</answer>", True),  # reflects, keeps it
    ("5 + 8 + 8 = 20. So 5 + 8 = 13 and 13 + 8 = 21. <answer>21</answer>", True),  # changes without reflecting
    ("Hmm, 5 + 8 = 13 and 13 + 8 = 21. <answer>21</answer>", True),  # reflects before stating anything
    ("5 + 8 + 8 = 20. <answer>21</answer> Wait.", True),  # the reflection comes after the last answer
    ("<answer>21</answer>", True),  # a single answer
    ("Wait, wait. Wait. That's an aha moment I can flag here.", True),  # reflection with no answer at all
    ("The answer is 21. Wait, the answer is 21.0.", True),  # the same answer written differently
])
def test_not_an_aha_candidate(text, correct):
    assert not is_aha_candidate(text, correct)


# ---------------------------------------------------------------------------- per-step metrics
def test_aha_step_metrics_by_hand():
    completions = [
        AHA,  # 1 reflection, correct, candidate
        "Wait, hmm. <answer>7</answer>",  # 2 reflections, wrong
        "<answer>21</answer>",  # none, correct
        "<answer>3</answer>",  # none, wrong
    ]
    metrics, candidates = aha_step_metrics(completions, [True, False, True, False])
    assert candidates == [0]
    assert metrics == {
        "aha/reflection_rate": 0.5,
        "aha/reflections_per_completion": 0.75,
        "aha/accuracy_with_reflection": 0.5, "aha/accuracy_with_reflection_n": 2.0,
        "aha/accuracy_without_reflection": 0.5, "aha/accuracy_without_reflection_n": 2.0,
        "aha/candidates": 1.0,
    }


def test_aha_step_metrics_omits_the_accuracy_of_an_empty_group():
    metrics, candidates = aha_step_metrics(["<answer>1</answer>", "<answer>2</answer>"], [True, False])
    assert "aha/accuracy_with_reflection" not in metrics
    assert metrics["aha/accuracy_with_reflection_n"] == 0.0
    assert metrics["aha/accuracy_without_reflection"] == 0.5
    assert metrics["aha/reflection_rate"] == 0.0 and candidates == []
    assert all(math.isfinite(v) for v in metrics.values())


def test_aha_step_metrics_edge_cases():
    assert aha_step_metrics([], []) == ({}, [])
    with pytest.raises(ValueError, match="2 completions but 1"):
        aha_step_metrics(["a", "b"], [True])
