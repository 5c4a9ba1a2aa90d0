"""JSONL reading with errors that name the file and line."""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterator

from r1lab.data.base import TaskError


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, record) from .jsonl or .jsonl.gz; a malformed line or missing field raises
    TaskError naming both."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
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
