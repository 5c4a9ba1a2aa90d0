"""The one place that finds a bundled data file (r1lab/bundled/data/SOURCES.md says where each comes from).

Every loader asks `bundled_file`; the files live in the package (r1lab.resources), so a wheel carries them.
"""
from __future__ import annotations

from pathlib import Path

from r1lab.data.base import TaskError
from r1lab.resources import DATA as DATA_DIR  # vendored copies of ../shared/data, inside the package
# source -> (train file or None, held-out / benchmark file)
BUNDLED = {
    "gsm8k": ("train/gsm8k_train.jsonl", "benchmarks/gsm8k.jsonl"),
    "math500": (None, "benchmarks/math500.jsonl"),
    "aime24": (None, "benchmarks/aime24.jsonl"),
}


def bundled_file(source: str, split: str = "test") -> Path:
    """The bundled `split` ("train" or "test") file of `source`; TaskError if it is not there."""
    train, test = BUNDLED[source]
    relative = train if split == "train" else test
    if relative is None:
        raise TaskError(f"task.source={source}: no bundled {split} file (it is a benchmark: held-out rows only)")
    path = DATA_DIR / relative
    if not path.is_file():
        raise TaskError(f"{source}: bundled data file {path} is missing; pass task.path=<file> (eval: --data <file>)")
    return path
