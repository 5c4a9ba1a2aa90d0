"""JSONL reading with errors that name the file and line."""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

from r1lab.data.base import TaskError


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, record) from .jsonl or .jsonl.gz; a malformed line or missing field raises
    TaskError naming both."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:  # bytes, decoded line by line: a bad byte is reported with its line
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise TaskError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column "
                                f"{err.start + 1})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise TaskError(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict):
                raise TaskError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            missing = [k for k in required if k not in record]
            if missing:
                raise TaskError(f"{path}:{lineno}: missing field(s) {missing}; fields present: {sorted(record)}")
            yield lineno, record


def text_field(record: dict, key: str, where: str, numbers: bool = True) -> str:
    """record[key] as text; a number is read as its digits (`"answer": 4`), a list, mapping, bool or null is
    refused, naming `where` (file:line) and the field, rather than silently stringified."""
    return text_value(record[key], key, where, numbers)


def text_value(value, key: str, where: str, numbers: bool = True) -> str:
    """`value` (field `key` of the record at `where`) as text, by the rule of `text_field`."""
    if isinstance(value, str):
        return value
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    expected = "a string or a number" if numbers else "a string"
    raise TaskError(f"{where}: field {key!r}: expected {expected}, got {type(value).__name__} {json.dumps(value)[:60]}")


def cut_torn_tail(path: Path) -> bytes:
    """The file's complete lines: bytes after the last newline (a write cut by a kill) are removed from disk."""
    raw = path.read_bytes()
    complete = raw.rfind(b"\n") + 1
    if complete < len(raw):
        with path.open("r+b") as fh:
            fh.truncate(complete)
    return raw[:complete]


def append_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Append records as JSON lines, flushed and fsynced: a logged record is never produced again on resume."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
