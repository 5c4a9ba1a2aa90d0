"""Rejection sampling: one case per drop reason, the first-failing-reason rule, dedupe, the per-prompt cap, files."""
import json

import pytest
import typer
from typer.testing import CliRunner

from r1lab.cli.generate import reject
from r1lab.pipeline.rejection import REASONS, RejectionConfig, filter_samples, reject_file, stats_path

GOOD = "<think>\nThree plus four is seven, minus two is five.\n</think>\n<answer>5</answer>"


def trace(completion=GOOD, id="q1", sample_index=0, **fields):
    return {"id": id, "question": "What is 3 + 4 - 2?", "answer": "5", "verifier": "exact", "metadata": {},
            "sample_index": sample_index, "completion": completion, "finish_reason": "stop", "num_tokens": None,
            "teacher": "t", **fields}


def reason_of(record, **cfg):
    kept, stats = filter_samples([record], RejectionConfig(**cfg))
    reasons = [r for r, count in stats["dropped"].items() if count]
    assert len(kept) + sum(stats["dropped"].values()) == 1
    return reasons[0] if reasons else None


def test_a_good_sample_is_kept():
    assert reason_of(trace()) is None


@pytest.mark.parametrize("record, cfg, reason", [
    (trace(finish_reason="length"), {}, "truncated"),
    (trace("<think>\nThree plus four is seven, minus two is five.\n<answer>5</answer>"), {}, "unclosed_think"),
    (trace("Three plus four is seven.</think><answer>5</answer>"), {}, "unclosed_think"),  # no opening tag
    (trace(num_tokens=11), {"max_tokens": 10}, "too_long"),
    # 9 words: Three plus four seven two (Latin) + 等 于 减 去 (4 Han characters) -> 5/9 English
    (trace("<think>\nThree plus four 等于 seven 减去 two.\n</think>\n<answer>5</answer>"), {}, "mixed_language"),
    # tokens: <think>, 20 x wait, </think>, <answer>5</answer> -> 20 4-grams, 4 distinct -> 0.8 repeated
    (trace("<think>\n" + "wait " * 20 + "\n</think>\n<answer>5</answer>"), {}, "repetition"),
    (trace(answer="6"), {}, "incorrect"),
    (trace("<think>\nThree plus four is seven, minus two is five.\n</think>\nThe answer is 5."), {}, "incorrect"),
])
def test_each_drop_reason(record, cfg, reason):
    assert reason_of(record, **cfg) == reason


def test_token_limit_boundary_and_estimate():
    assert reason_of(trace(num_tokens=10), max_tokens=10) is None
    # no num_tokens: ceil(UTF-8 bytes / 4); GOOD is 80 bytes, plus a newline 81 -> 21 tokens
    text = GOOD + "\n"
    assert len(text.encode()) == 81
    assert reason_of(trace(text), max_tokens=21) is None
    assert reason_of(trace(text), max_tokens=20) == "too_long"


def test_thinking_without_words_is_not_mixed_language():
    assert reason_of(trace("<think>\n3+4=7, 7-2=5\n</think>\n<answer>5</answer>")) is None


def test_lenient_takes_the_last_number():
    record = trace("<think>\nThree plus four is seven, minus two is five.\n</think>\nThe answer is 5.")
    assert reason_of(record, lenient=True) is None


def test_a_sample_failing_several_checks_counts_under_the_first():
    record = trace("<think>\n" + "wait " * 20 + "\n<answer>6</answer>", finish_reason="length")
    assert reason_of(record) == "truncated"
    assert reason_of(record, drop_truncated=False) == "unclosed_think"
    assert reason_of(record, drop_truncated=False, require_closed_think=False) == "repetition"
    assert reason_of(record, drop_truncated=False, require_closed_think=False, max_repeated_ngram_share=1.0) == "incorrect"
    assert reason_of(record, drop_truncated=False, require_closed_think=False, max_repeated_ngram_share=1.0,
                     require_correct=False) is None


def test_every_check_can_be_turned_off():
    mixed = trace("<think>\nThree plus four 等于 seven 减去 two.\n</think>\n<answer>6</answer>", finish_reason="length")
    assert reason_of(mixed, drop_truncated=False, min_language_share=0.0, require_correct=False) is None


def test_dedupe_drops_a_repeat_for_the_same_prompt_only():
    records = [trace(), trace(GOOD.replace("\n", "  \n "), sample_index=1), trace(id="q2")]
    kept, stats = filter_samples(records, RejectionConfig())
    assert [(r["id"], r["sample_index"]) for r in kept] == [("q1", 0), ("q2", 0)]
    assert stats["dropped"]["duplicate"] == 1
    kept, _ = filter_samples(records, RejectionConfig(dedupe=False))
    assert len(kept) == 3


def test_max_per_prompt_keeps_the_first_m_and_ignores_dropped_ones():
    wrong = trace(answer="6", sample_index=0)
    variants = [trace(GOOD.replace("five", f"five ({i})"), sample_index=i + 1) for i in range(3)]
    kept, stats = filter_samples([wrong, *variants, trace(id="q2")], RejectionConfig(max_per_prompt=2))
    assert [(r["id"], r["sample_index"]) for r in kept] == [("q1", 1), ("q1", 2), ("q2", 0)]
    assert stats == {"input": 5, "kept": 3, "prompts": 2, "prompts_with_kept": 2,
                     "dropped": {**dict.fromkeys(REASONS, 0), "incorrect": 1, "over_cap": 1}}


def test_stats_count_prompts_with_nothing_kept():
    _, stats = filter_samples([trace(), trace(id="q2", answer="6")], RejectionConfig())
    assert (stats["prompts"], stats["prompts_with_kept"]) == (2, 1)


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="language must be one of"):
        RejectionConfig(language="xx")
    with pytest.raises(ValueError, match="max_per_prompt must be >= 0"):
        RejectionConfig(max_per_prompt=-1)


def write_traces(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_reject_file_writes_the_sft_set_and_stats(tmp_path):
    source = tmp_path / "traces.jsonl"
    write_traces(source, [trace(), trace(id="q2", answer="6"), trace(id="q3", finish_reason="length")])
    stats = reject_file(source, tmp_path / "sft.jsonl", RejectionConfig())
    [line] = (tmp_path / "sft.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert (record["id"], record["prompt"], record["completion"], record["answer"]) == \
        ("q1", "What is 3 + 4 - 2?", GOOD, "5")
    assert record["teacher"] == "t" and record["sample_index"] == 0  # source fields kept
    on_disk = json.loads(stats_path(tmp_path / "sft.jsonl").read_text())
    assert stats_path(tmp_path / "sft.jsonl").name == "sft.jsonl.stats.json"
    assert on_disk == stats
    assert (stats["input"], stats["kept"], stats["dropped"]["incorrect"], stats["dropped"]["truncated"]) == (3, 1, 1, 1)
    assert stats["config"]["max_per_prompt"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft.jsonl", "sft.jsonl.stats.json", "traces.jsonl"]


def test_reject_file_names_the_line_missing_a_field(tmp_path):
    source = tmp_path / "traces.jsonl"
    record = trace()
    del record["answer"]
    write_traces(source, [trace(), record])
    with pytest.raises(ValueError, match=r"traces\.jsonl:2: missing field\(s\) \['answer'\]"):
        reject_file(source, tmp_path / "sft.jsonl", RejectionConfig())
    assert not (tmp_path / "sft.jsonl").exists()


def test_reject_command(tmp_path):
    source = tmp_path / "traces.jsonl"
    write_traces(source, [trace(), trace(sample_index=1), trace(id="q2", answer="6")])
    app = typer.Typer()
    app.command()(reject)
    result = CliRunner().invoke(app, [str(source), str(tmp_path / "sft.jsonl"), "--set", "dedupe=false"])
    assert result.exit_code == 0, result.output
    assert "kept 2 of 3 samples (1 of 2 prompts); dropped: incorrect 1" in " ".join(result.output.split())
    bad = CliRunner().invoke(app, [str(source), str(tmp_path / "sft.jsonl"), "--set", "ngram=0"])
    assert bad.exit_code == 2 and "ngram must be >= 1" in bad.output
