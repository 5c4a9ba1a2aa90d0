"""Row readers of the built-in sources: reasoning-gym by name, GSM8K's '####' answers, prompt/answer JSONL.

They register as task sources in data/builtin.py; datasets (Parquet, CSV, Hub, ...) are in data/tables.py.
"""
from __future__ import annotations

from pathlib import Path

from r1lab.data.base import Row, Task, TaskConfig, TaskError
from r1lab.data.files import read_jsonl, text_field


def reasoning_gym_task(cfg: TaskConfig) -> Task:
    import reasoning_gym

    try:
        # Distinct seeds give independent procedural streams; duplicates are then removed below.
        train = reasoning_gym.create_dataset(cfg.name, size=cfg.train_size, seed=cfg.seed, **cfg.kwargs)
        test = reasoning_gym.create_dataset(cfg.name, size=cfg.test_size * 2, seed=cfg.seed + 1_000_003, **cfg.kwargs)
    except (KeyError, ValueError) as err:
        raise TaskError(f"task.name={cfg.name!r} / task.kwargs={cfg.kwargs}: reasoning-gym says: {err}") from None
    except TypeError as err:
        raise TaskError(f"task.kwargs={cfg.kwargs} for reasoning-gym {cfg.name!r}: {err}") from None

    def row(split: str, i: int, entry: dict) -> Row:
        return Row(id=f"{cfg.name}-{split}-{i}", question=entry["question"], answer=str(entry["answer"]),
                   verifier="reasoning_gym", metadata={"entry": _jsonable(entry)})

    # Held-out first (unique questions), then train without any held-out question: small problem
    # spaces (1-digit sums) repeat, and a repeat across splits would leak the answer.
    test_rows, held = [], set()
    for i, e in enumerate(test):
        if e["question"] not in held and len(test_rows) < cfg.test_size:
            held.add(e["question"])
            test_rows.append(row("test", i, e))
    train_rows = [row("train", i, e) for i, e in enumerate(train) if e["question"] not in held]
    if not train_rows:
        raise TaskError(f"reasoning-gym {cfg.name} with {cfg.kwargs}: every train question is held out; "
                        "lower task.test_size or widen the task")
    return Task(f"reasoning_gym/{cfg.name}", train_rows, test_rows)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def gsm8k_rows(path: str | Path, split: str) -> list[Row]:
    rows = []
    for lineno, rec in read_jsonl(path, required=("question", "answer")):
        where = f"{path}:{lineno}"
        question, solution = text_field(rec, "question", where, numbers=False), text_field(rec, "answer", where)
        if "####" not in solution:
            raise TaskError(f"{where}: field 'answer' has no '#### <final answer>' marker")
        final = solution.rsplit("####", 1)[1].strip().replace(",", "")
        rows.append(Row(id=f"gsm8k-{split}-{lineno}", question=question, answer=final,
                        verifier="numeric", metadata={"solution": solution}))
    return rows


def jsonl_rows(path: str | Path, prompt_field: str, answer_field: str, verifier: str, prefix: str) -> list[Row]:
    rows = []
    for lineno, rec in read_jsonl(path, required=(prompt_field, answer_field)):
        where = f"{path}:{lineno}"
        row_id = text_field(rec, "id", where) if "id" in rec else f"{prefix}-{lineno}"
        rows.append(Row(id=row_id, question=text_field(rec, prompt_field, where, numbers=False),
                        answer=text_field(rec, answer_field, where), verifier=verifier,
                        metadata={k: v for k, v in rec.items() if k not in (prompt_field, answer_field)}))
    return rows
