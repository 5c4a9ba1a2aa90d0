"""Datasets as tasks (`task.source: hf`, and `jsonl`): a Hub id, a folder saved by `datasets`, or a
Parquet / CSV / JSON / JSONL file, with `prompt_field` / `answer_field` as dotted paths into nested
columns and an optional row transform (`module:function`, record -> record or None to drop it).

Every other column stays on the row (its metadata), so rewards receive them as keyword arguments.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator

from r1lab.config import config_dir
from r1lab.data.base import Row, TaskConfig, TaskError
from r1lab.data.files import read_jsonl, text_value

PROMPT_FIELD_GUESSES = ("prompt", "question", "problem")
TABLE_SUFFIXES = (".parquet", ".csv", ".json", ".jsonl", ".gz")


def _dataset_folder(path: Path, split: str) -> Iterator[tuple[str, dict]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as err:  # not a saved dataset, or a corrupt one
        raise TaskError(f"{path}: not a folder saved by datasets.save_to_disk ({type(err).__name__}: {err})") from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        chosen = split or ("train" if "train" in splits else splits[0] if len(splits) == 1 else "")
        if chosen not in splits:
            raise TaskError(f"{path}: task.split={split!r} is not one of its splits: {', '.join(splits)}")
        loaded = loaded[chosen]
    for i, record in enumerate(loaded):
        yield f"{path} row {i}", dict(record)


def _file(path: Path) -> Iterator[tuple[str, dict]]:
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for i, record in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path} row {i}", record
    elif name.endswith(".csv"):  # every value a string, exactly as written ("007" stays "007")
        with path.open(newline="", encoding="utf-8") as fh:
            for i, record in enumerate(csv.DictReader(fh)):
                yield f"{path}:{i + 2}", record  # line 1 is the header
    elif name.endswith(".json"):
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:  # JSON Lines under a .json name
            yield from ((f"{path}:{n}", r) for n, r in read_jsonl(path))
            return
        if not isinstance(loaded, list) or not all(isinstance(r, dict) for r in loaded):
            raise TaskError(f"{path}: expected a JSON list of objects (or JSON Lines)")
        yield from ((f"{path} row {i}", r) for i, r in enumerate(loaded))
    elif name.endswith((".jsonl", ".jsonl.gz")):
        yield from ((f"{path}:{n}", r) for n, r in read_jsonl(path))
    else:
        raise TaskError(f"{path}: unknown data format; expected .parquet, .csv, .json, .jsonl(.gz) or a datasets folder")


def read_records(cfg: TaskConfig) -> list[tuple[str, dict]]:
    """(where, record) for every record of `cfg.path`: a local folder or file, else a Hub id."""
    from r1lab.data.hub import hub_file, is_hub_id

    if not cfg.path:
        raise TaskError(f"task.source={cfg.source} needs task.path=<Hub id, datasets folder, or data file>")
    path = Path(cfg.path).expanduser()
    if not path.exists() and config_dir(cfg) and (config_dir(cfg) / path).exists():
        path = config_dir(cfg) / path
    if path.is_dir():
        return list(_dataset_folder(path, cfg.split))
    if path.is_file():
        return list(_file(path))
    if is_hub_id(cfg.path):
        cached = hub_file(cfg.path, cfg.split)
        return [(f"{cfg.path}:{n}", r) for n, r in read_jsonl(cached)]
    raise TaskError(f"task.path={cfg.path}: no such file or folder (and not a Hub id org/name)")


def field_value(record: dict, dotted: str, where: str) -> Any:
    """`a.b.0` -> record["a"]["b"][0]; a missing step names the fields that do exist there."""
    value, walked = record, []
    for step in dotted.split("."):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, (list, tuple)) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            at = f" in {'.'.join(walked)}" if walked else ""
            present = sorted(value) if isinstance(value, dict) else f"a {type(value).__name__}"
            raise TaskError(f"{where}: missing field(s) [{dotted!r}]; fields present{at}: {present}")
        walked.append(step)
    return value


def _prompt_field(cfg: TaskConfig, where: str, record: dict) -> str:
    if cfg.prompt_field:
        return cfg.prompt_field
    for name in PROMPT_FIELD_GUESSES:
        if name in record:
            return name
    raise TaskError(f"{where}: no prompt field among {list(PROMPT_FIELD_GUESSES)}; fields present: {sorted(record)}; "
                    "set task.prompt_field (eval: --prompt-field)")


def records_to_rows(records: list[tuple[str, dict]], cfg: TaskConfig, prefix: str) -> list[Row]:
    transform = None
    if cfg.transform:
        from r1lab.refs import resolve_callable

        transform = resolve_callable(cfg.transform, [config_dir(cfg)])
    rows = []
    for where, record in records:
        if transform is not None:
            record = transform(record)
            if record is None:
                continue
            if not isinstance(record, dict):
                raise TaskError(f"{where}: task.transform {cfg.transform} returned {type(record).__name__}, expected a dict")
        prompt_field = _prompt_field(cfg, where, record)
        question = field_value(record, prompt_field, where)
        answer = field_value(record, cfg.answer_field or "answer", where)
        verifier = cfg.verifier or (record["verifier"] if isinstance(record.get("verifier"), str) else "math")
        taken = (prompt_field, cfg.answer_field or "answer")  # on the row as question / answer already
        row_id = text_value(record["id"], "id", where) if "id" in record else f"{prefix}-{len(rows)}"
        rows.append(Row(id=row_id, question=text_value(question, prompt_field, where, numbers=False),
                        answer=text_value(answer, cfg.answer_field or "answer", where), verifier=verifier,
                        metadata={k: v for k, v in record.items() if k not in taken}))
    if not rows:
        raise TaskError(f"task.path={cfg.path}: the dataset has no rows" + (" (after task.transform)" if transform else ""))
    return rows


def dataset_rows(cfg: TaskConfig) -> list[Row]:
    from r1lab.data.hub import KNOWN, hub_rows

    if cfg.path in KNOWN and not Path(cfg.path).exists() and not cfg.transform:  # a known benchmark's own format
        return hub_rows(cfg.path, cfg.prompt_field, cfg.answer_field, cfg.verifier or "math", cfg.split)
    return records_to_rows(read_records(cfg), cfg, Path(cfg.path).stem or "row")
