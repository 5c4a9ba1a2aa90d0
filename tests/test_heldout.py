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


class _ScriptedEngine:
    """Replies with one fixed text, cut by the real finish logic under whatever params it is given."""

    def __init__(self, tokenizer, reply: str):
        self.tokenizer, self.reply_ids, self.seen = tokenizer, tokenizer(reply, add_special_tokens=False)["input_ids"], []

    def generate(self, prompts, params, seeds=None):
        from r1lab.rollout.finish import finish_completion

        self.seen.append(params)
        return [finish_completion(p, self.reply_ids, None, self.tokenizer, set(), params) for p in prompts]


@pytest.mark.parametrize("stop_at_answer", [False, True])
def test_stop_at_answer_ends_the_reply_at_the_tag_and_keeps_it_for_the_format_reward(tokenizer, stop_at_answer):
    from r1lab.data.prompts import PromptConfig
    from r1lab.rl.heldout import heldout_records
    from r1lab.rollout import SamplingParams

    row = load_task(TaskConfig(name="chain_sum", kwargs={"min_terms": 3, "max_terms": 3, "min_digits": 1,
                                                         "max_digits": 1}, train_size=4, test_size=4)).test[0]
    reply = f" add them up </think> <answer>{row['answer']}</answer> and then some more text"
    engine = _ScriptedEngine(tokenizer, reply)
    prompt = PromptConfig(style="zero", stop_at_answer=stop_at_answer)
    [record] = heldout_records(engine, tokenizer, [row], prompt, SamplingParams(max_new_tokens=len(engine.reply_ids)))
    assert record["accuracy"] == 1.0
    # the strict format reward refuses text after </answer>: stopping there is what makes the reply well-formed
    assert record["format"] == (1.0 if stop_at_answer else 0.0)
    cut = len(tokenizer(reply[: reply.index("</answer>") + len("</answer>")], add_special_tokens=False)["input_ids"])
    assert record["length"] == (cut if stop_at_answer else len(engine.reply_ids))
    assert engine.seen[0].stop == (["</answer>"] if stop_at_answer else [])
