import json

import pytest

from r1lab.eval.records import EvalError, append_samples, read_samples


def _record(q, j, completion="x"):
    return {"question_id": q, "sample_index": j, "completion": completion, "answer": None, "correct": False}


def test_records_round_trip_including_unicode_line_separators(tmp_path):
    path = tmp_path / "samples.jsonl"
    batch = [_record("a", 0, "line one\u2028still one record"), _record("a", 1, "ü")]
    append_samples(path, batch)
    assert read_samples(path) == batch


def test_a_torn_last_write_is_cut_off_so_appends_stay_clean(tmp_path):
    path = tmp_path / "samples.jsonl"
    append_samples(path, [_record("a", 0)])
    with path.open("a") as fh:
        fh.write(json.dumps(_record("a", 1))[:20])  # killed mid-write
    assert [r["sample_index"] for r in read_samples(path)] == [0]
    append_samples(path, [_record("a", 1)])
    assert [r["sample_index"] for r in read_samples(path)] == [0, 1]


def test_a_corrupt_complete_line_names_file_and_line(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(_record("a", 0)) + "\n{oops\n" + json.dumps(_record("a", 1)) + "\n")
    with pytest.raises(EvalError, match=r"samples.jsonl:2: not valid JSON"):
        read_samples(path)


def test_a_record_missing_fields_is_named(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps({"question_id": "a", "sample_index": 0}) + "\n")
    with pytest.raises(EvalError, match=r":1: sample record misses field\(s\) \['completion', 'answer', 'correct'\]"):
        read_samples(path)


def test_no_log_yet_means_no_samples(tmp_path):
    assert read_samples(tmp_path / "missing.jsonl") == []
