import json
import sys
import types

import pytest

from r1lab.data import TaskConfig, TaskError, load_task
from r1lab.eval.benchmarks import BenchmarkSpec, load_benchmark


@pytest.mark.parametrize("name, size, verifier", [
    ("gsm8k", 1319, "numeric"), ("math500", 500, "math"), ("aime24", 30, "math"), ("humaneval", 164, "code"),
])
def test_bundled_benchmarks_load_whole_in_file_order(name, size, verifier):
    rows = load_benchmark(BenchmarkSpec(name))
    assert len(rows) == size
    assert {r["verifier"] for r in rows} == {verifier}
    assert load_benchmark(BenchmarkSpec(name, limit=3)) == rows[:3]


def test_gsm8k_rows_carry_the_final_answer_and_the_solution():
    row = load_benchmark(BenchmarkSpec("gsm8k", limit=1))[0]
    assert row["answer"] == "18"
    assert row["metadata"]["solution"].endswith("#### 18")


def test_humaneval_rows_carry_what_a_test_runner_needs():
    row = load_benchmark(BenchmarkSpec("humaneval", limit=1))[0]
    assert row["id"] == "HumanEval/0"
    assert set(row["metadata"]) >= {"prompt", "test", "entry_point"}
    assert row["metadata"]["entry_point"] == "has_close_elements"
    assert row["answer"].startswith(row["metadata"]["prompt"])
    assert row["metadata"]["prompt"] in row["question"]


def test_benchmark_from_a_path_in_the_bundled_format(tmp_path):
    path = tmp_path / "mini.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "answer": "so 2\n#### 2"}) + "\n")
    rows = load_benchmark(BenchmarkSpec("gsm8k", data=str(path)))
    assert [(r["question"], r["answer"]) for r in rows] == [("1+1?", "2")]


def test_generic_jsonl_with_answer_field_and_guessed_prompt_field(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"q{i}", "problem": f"{i}+1?", "target": str(i + 1)}) for i in range(3)))
    rows = load_benchmark(BenchmarkSpec("jsonl", data=str(path), answer_field="target"))
    assert [(r["id"], r["question"], r["answer"], r["verifier"]) for r in rows] == [
        ("q0", "0+1?", "1", "math"), ("q1", "1+1?", "2", "math"), ("q2", "2+1?", "3", "math")]


def test_jsonl_missing_answer_field_names_file_and_line(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"problem": "?", "answer": "1"}) + "\n" + json.dumps({"problem": "?"}) + "\n")
    with pytest.raises(TaskError, match=r"mine.jsonl:2: missing field\(s\) \['answer'\]"):
        load_benchmark(BenchmarkSpec("jsonl", data=str(path)))


def test_jsonl_needs_a_file():
    with pytest.raises(TaskError, match="--data"):
        load_benchmark(BenchmarkSpec("jsonl"))


def test_duplicate_question_ids_are_refused(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text("\n".join(json.dumps({"id": "same", "prompt": p, "answer": "1"}) for p in ("a", "b")))
    with pytest.raises(TaskError, match="'same' appears twice"):
        load_benchmark(BenchmarkSpec("jsonl", data=str(path)))


def test_reasoning_gym_benchmark_is_the_training_held_out_split():
    rows = load_benchmark(BenchmarkSpec("chain_sum", seed=3, limit=5))
    held_out = load_task(TaskConfig(source="reasoning_gym", name="chain_sum", seed=3, test_size=5, train_size=5)).test
    assert [r["question"] for r in rows] == [r["question"] for r in held_out]
    assert {r["verifier"] for r in rows} == {"reasoning_gym"}


def test_unknown_benchmark_lists_the_choices():
    with pytest.raises(TaskError, match="unknown benchmark 'mat500': expected one of .*math500"):
        load_benchmark(BenchmarkSpec("mat500"))


def _fake_datasets(monkeypatch, records, calls):
    def load_dataset(dataset_id, config=None, split=None):
        calls.append((dataset_id, config, split))
        return records
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))


def test_hub_id_is_downloaded_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path))
    calls = []
    _fake_datasets(monkeypatch, [{"problem": "1+1", "answer": "2", "unique_id": "x"}], calls)
    first = load_benchmark(BenchmarkSpec("HuggingFaceH4/MATH-500"))
    second = load_benchmark(BenchmarkSpec("HuggingFaceH4/MATH-500"))
    assert calls == [("HuggingFaceH4/MATH-500", None, "test")]
    assert first == second
    assert [(r["question"], r["answer"], r["verifier"]) for r in first] == [("1+1", "2", "math")]


def test_hub_gsm8k_uses_the_gsm8k_answer_format(tmp_path, monkeypatch):
    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path))
    calls = []
    _fake_datasets(monkeypatch, [{"question": "2*3?", "answer": "2*3=6\n#### 6"}], calls)
    rows = load_benchmark(BenchmarkSpec("openai/gsm8k"))
    assert calls == [("openai/gsm8k", "main", "test")]
    assert [(r["answer"], r["verifier"]) for r in rows] == [("6", "numeric")]


def test_hub_id_without_the_datasets_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails
    with pytest.raises(TaskError, match="pip install datasets"):
        load_benchmark(BenchmarkSpec("HuggingFaceH4/MATH-500"))
