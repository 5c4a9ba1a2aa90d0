"""Hub datasets by id (e.g. HuggingFaceH4/MATH-500), downloaded once with `datasets` into a JSONL cache.

The cached file is read by the same loaders as the bundled files, so a hub copy and a local copy of a
benchmark give identical rows, and a second run needs no network.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from r1lab.data.base import Row, TaskError
from r1lab.data.humaneval import humaneval_rows
from r1lab.data.sources import gsm8k_rows, jsonl_rows


@dataclass(frozen=True)
class HubFormat:
    split: str
    reader: str  # "gsm8k" | "humaneval" | "fields"
    prompt_field: str = "problem"
    answer_field: str = "answer"
    config: str | None = None


# The ids the community's R1 evaluations use; any other id is read as prompt/answer fields.
KNOWN = {
    "HuggingFaceH4/MATH-500": HubFormat("test", "fields"),
    "HuggingFaceH4/aime_2024": HubFormat("train", "fields"),
    "Maxwell-Jia/AIME_2024": HubFormat("train", "fields", "Problem", "Answer"),
    "openai/gsm8k": HubFormat("test", "gsm8k", config="main"),
    "openai/openai_humaneval": HubFormat("test", "humaneval"),
}


def is_hub_id(name: str) -> bool:
    return name in KNOWN or (name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists())


def _cache_file(dataset_id: str, fmt: HubFormat) -> Path:
    from r1lab.models import cache_dir

    slug = dataset_id.replace("/", "__") + (f"__{fmt.config}" if fmt.config else "") + f"__{fmt.split}"
    return cache_dir() / "datasets" / f"{slug}.jsonl"


def _download(dataset_id: str, fmt: HubFormat, target: Path) -> None:
    try:
        import datasets
    except ImportError:
        raise TaskError(f"hub dataset {dataset_id!r} needs the `datasets` package (pip install datasets), "
                        "or download it yourself and pass --data <file.jsonl>") from None
    try:
        table = datasets.load_dataset(dataset_id, fmt.config, split=fmt.split)
    except Exception as err:  # offline, unknown id, missing split: all reach the user as one message
        raise TaskError(f"hub dataset {dataset_id!r} (config {fmt.config}, split {fmt.split!r}) could not be "
                        f"loaded: {type(err).__name__}: {err}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for record in table:
            fh.write(json.dumps(dict(record), ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, target)  # a half-written cache never looks complete


def hub_file(dataset_id: str, split: str = "") -> Path:
    """The cached JSONL copy of a Hub dataset's split (downloaded on first use); default split: the known
    one for the ids in KNOWN, else "train"."""
    return _cached(dataset_id, _format(dataset_id, split))


def _format(dataset_id: str, split: str) -> HubFormat:
    fmt = KNOWN.get(dataset_id, HubFormat("train", "fields"))
    return HubFormat(split, fmt.reader, fmt.prompt_field, fmt.answer_field, fmt.config) if split else fmt


def _cached(dataset_id: str, fmt: HubFormat) -> Path:
    path = _cache_file(dataset_id, fmt)
    if not path.is_file():
        _download(dataset_id, fmt, path)
    return path


def hub_rows(dataset_id: str, prompt_field: str = "", answer_field: str = "", verifier: str = "math",
             split: str = "") -> list[Row]:
    """Rows of a known benchmark id in its own format (GSM8K's '####' answers, HumanEval's tests)."""
    fmt = _format(dataset_id, split)
    path = _cached(dataset_id, fmt)
    if fmt.reader == "gsm8k":
        return gsm8k_rows(path, "test")
    if fmt.reader == "humaneval":
        return humaneval_rows(path)
    prefix = dataset_id.rsplit("/", 1)[-1]
    return jsonl_rows(path, prompt_field or fmt.prompt_field, answer_field or fmt.answer_field, verifier, prefix)
