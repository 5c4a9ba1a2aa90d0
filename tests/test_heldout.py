"""The trainer's held-out summary counts right answers as `r1lab eval` does: full credit only."""
import pytest

from r1lab.data import TaskConfig, load_task
from r1lab.rewards import get_reward
from r1lab.rl.heldout import summarize_heldout


def _record(accuracy: float) -> dict:
    return {"index": 0, "accuracy": accuracy, "accuracy_lenient": accuracy, "format": 1.0,
            "language_consistency": 0.0, "length": 10}


def test_partial_credit_is_not_a_right_answer_but_its_score_is_kept():
    row = load_task(TaskConfig(name="chain_sum", kwargs={"min_terms": 3, "max_terms": 3, "min_digits": 1,
                                                         "max_digits": 1}, train_size=4, test_size=4)).test[0]
    partial = get_reward("accuracy")(f"<answer>-{row['answer']}0</answer>", **row)  # reasoning-gym: substring credit
    assert 0.0 < partial < 1.0
    summary = summarize_heldout([_record(1.0), _record(partial), _record(0.0), _record(1.0)])
    assert summary["eval/accuracy"] == summary["eval/accuracy_lenient"] == 0.5
    assert summary["eval/accuracy_score"] == pytest.approx((2.0 + partial) / 4)
    assert summary["eval/n"] == 4.0
