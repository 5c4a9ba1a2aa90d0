"""The per-sample log, samples.jsonl: appended and flushed once per batch, read back to resume.

A run killed mid-write leaves at most one partial last line; it is cut off on open, so the next
append starts on a clean line and the lost samples are simply generated again.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from r1lab.data.files import append_jsonl, cut_torn_tail

# The files of one evaluation folder.
SAMPLES_FILE, SUMMARY_FILE, CONFIG_FILE = "samples.jsonl", "summary.json", "eval_config.json"
SAMPLE_FIELDS = ("question_id", "sample_index", "completion", "answer", "correct")


class EvalError(ValueError):
    """A user-facing evaluation problem; the message names the file, line or field."""


def read_samples(path: Path) -> list[dict]:
    """Every complete record; bytes after the last newline (a torn write) are cut from the file."""
    if not path.is_file():
        return []
    records = []
    # split on "\n" only: splitlines() would also break at U+2028, which completions may contain
    for lineno, line in enumerate(cut_torn_tail(path).decode("utf-8").split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise EvalError(f"{path}:{lineno}: not valid JSON ({err.msg}); fix or delete this line to resume") from None
        missing = [f for f in SAMPLE_FIELDS if f not in record]
        if missing:
            raise EvalError(f"{path}:{lineno}: sample record misses field(s) {missing}")
        records.append(record)
    return records


def append_samples(path: Path, records: Iterable[dict]) -> None:
    append_jsonl(path, records)
