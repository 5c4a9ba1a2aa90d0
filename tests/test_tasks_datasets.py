"""Tasks from datasets (save_to_disk folders, Parquet, CSV, JSON, JSONL) and from the user's own files,
through the one registry that training and evaluation share."""
import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from r1lab.data import TaskConfig, TaskError, evaluation_rows, load_task
from r1lab.eval.benchmarks import BenchmarkSpec, load_benchmark

RECORDS = [{"uid": i, "meta": {"q": f"what is {i} + 1?", "level": i % 3}, "sol": {"final": str(i + 1)}}
           for i in range(12)]
FIELDS = dict(prompt_field="meta.q", answer_field="sol.final")


def _flat(records):
    return [{"uid": r["uid"], "q": r["meta"]["q"], "final": r["sol"]["final"]} for r in records]


def _check(task, n=12, test=3):
    assert len(task.test) == test and len(task.train) == n - test
    assert not {r["question"] for r in task.train} & {r["question"] for r in task.test}
    row = next(r for r in task.train + task.test if r["question"] == "what is 4 + 1?")
    assert row["answer"] == "5" and row["verifier"] == "math"
    return row


def test_parquet_with_nested_columns(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(RECORDS), path)
    row = _check(load_task(TaskConfig(source="hf", path=str(path), test_size=3, **FIELDS)))
    assert row["metadata"]["meta"]["level"] == 1  # every column stays on the row, for rewards


def test_saved_datasets_folder_and_its_splits(tmp_path):
    folder = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(_flat(RECORDS)),
                          "other": datasets.Dataset.from_list(_flat(RECORDS[:4]))}).save_to_disk(str(folder))
    _check(load_task(TaskConfig(source="hf", path=str(folder), test_size=3, prompt_field="q", answer_field="final")))
    other = load_task(TaskConfig(source="hf", path=str(folder), split="other", test_size=1, prompt_field="q",
                                 answer_field="final"))
    assert len(other.train) == 3
    with pytest.raises(TaskError, match=r"task.split='nope' is not one of its splits: train, other"):
        load_task(TaskConfig(source="hf", path=str(folder), split="nope", prompt_field="q"))


def test_csv_keeps_values_as_written(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("q,final\n" + "".join(f"what is {i} + 1?,{i + 1}\n" for i in range(12)) + "pad,007\n")
    task = load_task(TaskConfig(source="hf", path=str(path), test_size=3, prompt_field="q", answer_field="final"))
    assert any(r["answer"] == "007" for r in task.train + task.test)


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_json_and_jsonl_files(tmp_path, suffix):
    path = tmp_path / f"d{suffix}"
    text = json.dumps(RECORDS) if suffix == ".json" else "".join(json.dumps(r) + "\n" for r in RECORDS)
    path.write_text(text)
    _check(load_task(TaskConfig(source="hf", path=str(path), test_size=3, **FIELDS)))


def test_the_same_question_twice_lands_on_one_side(tmp_path):
    path = tmp_path / "dups.jsonl"
    records = [{"prompt": f"q{i % 5}", "answer": str(i % 5)} for i in range(20)]  # each question 4 times
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    for seed in range(5):
        task = load_task(TaskConfig(source="hf", path=str(path), test_size=2, seed=seed))
        assert len(task.test) == 2 and len(task.train) == 12
        assert not {r["question"] for r in task.train} & {r["question"] for r in task.test}


def test_row_transform_reshapes_or_drops_records(tmp_path):
    (tmp_path / "shape.py").write_text(
        "def keep_even(record):\n"
        "    if record['uid'] % 2:\n        return None\n"
        "    return {'prompt': record['meta']['q'], 'answer': record['sol']['final'], 'id': f\"u{record['uid']}\"}\n")
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(RECORDS), path)
    rows = evaluation_rows(TaskConfig(source="hf", path=str(path), transform=f"{tmp_path}/shape.py:keep_even"))
    assert [r["id"] for r in rows] == ["u0", "u2", "u4", "u6", "u8", "u10"]


def test_missing_column_lists_the_columns_that_exist(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(RECORDS), path)
    with pytest.raises(TaskError, match=r"d\.parquet row 0: missing field\(s\) \['meta.question'\]; "
                                        r"fields present in meta: \['level', 'q'\]"):
        load_task(TaskConfig(source="hf", path=str(path), prompt_field="meta.question"))
    with pytest.raises(TaskError, match=r"missing field\(s\) \['answer'\]; fields present: \['meta', 'sol', 'uid'\]"):
        load_task(TaskConfig(source="hf", path=str(path), prompt_field="meta.q"))


def test_empty_dataset_and_a_held_out_set_as_large_as_the_data(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("prompt,answer\n")
    with pytest.raises(TaskError, match="the dataset has no rows"):
        load_task(TaskConfig(source="hf", path=str(empty)))
    small = tmp_path / "small.csv"
    small.write_text("prompt,answer\na,1\nb,2\na,1\n")
    with pytest.raises(TaskError, match=r"task.test_size=2 but the dataset has only 2 distinct questions"):
        load_task(TaskConfig(source="hf", path=str(small), test_size=2))


USER_TASK = '''
from r1lab.data import Task

def is_seven(predicted, row):
    return float(predicted is not None and predicted.strip() == "7")

def sevens(n=10):
    return [{"question": f"say seven ({i})", "answer": "7", "verifier": is_seven} for i in range(n)]

def fixed():
    row = lambda i: {"id": f"f{i}", "question": f"q{i}", "answer": "1", "verifier": "exact", "metadata": {}}
    return Task("fixed", [row(0), row(1)], [row(2)])
'''


def test_user_task_from_a_file_with_its_own_verifier(tmp_path):
    from r1lab.rewards import get_verifier, score_batch

    (tmp_path / "my_task.py").write_text(USER_TASK)
    task = load_task(TaskConfig(source=f"{tmp_path}/my_task.py:sevens", kwargs={"n": 6}, test_size=2))
    assert len(task.train) == 4 and len(task.test) == 2
    verifier = task.train[0]["verifier"]
    assert isinstance(verifier, str) and get_verifier(verifier)("7", task.train[0]) == 1.0
    scores = score_batch(["<answer>7</answer>", "<answer>8</answer>"], task.train[:2], {"accuracy": 1.0}).total
    assert scores == [1.0, 0.0]
    fixed = load_task(TaskConfig(source=f"{tmp_path}/my_task.py:fixed"))
    assert [r["id"] for r in fixed.test] == ["f2"]


def test_eval_and_training_resolve_the_same_names(tmp_path):
    (tmp_path / "my_task.py").write_text(USER_TASK)
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(_flat(RECORDS)), path)
    # a reasoning-gym dataset name: eval -b is training's held-out split
    gym = load_benchmark(BenchmarkSpec("chain_sum", seed=2, limit=4))
    assert [r["question"] for r in gym] == [r["question"] for r in load_task(
        TaskConfig(source="chain_sum", seed=2, test_size=4, train_size=4)).test]
    # a user task (returning a Task): its held-out split in both
    assert load_benchmark(BenchmarkSpec(f"{tmp_path}/my_task.py:fixed")) == load_task(
        TaskConfig(source=f"{tmp_path}/my_task.py:fixed")).test
    # a dataset file: eval scores every row, training splits the same rows
    rows = load_benchmark(BenchmarkSpec("hf", data=str(path), prompt_field="q", answer_field="final"))
    task = load_task(TaskConfig(source="hf", path=str(path), prompt_field="q", answer_field="final", test_size=3))
    assert sorted(r["question"] for r in rows) == sorted(r["question"] for r in task.train + task.test)
    # bundled benchmarks by the same name
    assert load_benchmark(BenchmarkSpec("math500", limit=2)) == load_task(TaskConfig(source="math500", test_size=2)).test


def test_unknown_source_names_the_choices():
    with pytest.raises(TaskError, match=r"task.source='nope': expected one of aime24, gsm8k, hf, humaneval, jsonl, "
                                        r"math500, reasoning_gym"):
        load_task(TaskConfig(source="nope"))
    with pytest.raises(ValueError, match=r"no_module_here:fn: cannot import module"):
        load_task(TaskConfig(source="no_module_here:fn"))
