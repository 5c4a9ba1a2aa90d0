"""Benchmarks by name -> held-out task rows, in a fixed order (so `limit` always picks the same questions).

A benchmark name is a task source, looked up in the one task registry (data/registry.py), so
`r1lab eval -b NAME` accepts what `task.source` accepts: math500, aime24, gsm8k, humaneval (bundled, or
`data` in the same format), jsonl / hf (`data`: a file, datasets folder or Hub id), a reasoning-gym
dataset (its seeded held-out split, the same one training holds out with the same seed), a Hub id, or
the user's own task (module:function / file.py:function). Files are scored whole, in their order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from r1lab.data import Row, TaskConfig, TaskError, evaluation_rows

DEFAULT_GYM_SIZE = 200  # held-out questions drawn for a reasoning-gym task when no limit is given


@dataclass
class BenchmarkSpec:
    name: str
    data: str = ""  # a file overriding the bundled copy (jsonl / hf: required)
    prompt_field: str = ""  # jsonl / hf / user rows; "" guesses prompt, question or problem
    answer_field: str = "answer"
    verifier: str = ""  # jsonl / hf: "" keeps each row's own (default "math")
    seed: int = 0  # reasoning-gym / user tasks: which held-out split
    task_kwargs: dict[str, Any] = field(default_factory=dict)  # reasoning-gym options; a user task's arguments
    limit: int = 0  # first n questions; 0 = all

    def task_config(self) -> TaskConfig:
        size = self.limit or DEFAULT_GYM_SIZE  # split sources: the held-out size (train is drawn only to keep it identical)
        return TaskConfig(source=self.name, path=self.data, kwargs=self.task_kwargs, seed=self.seed,
                          train_size=size, test_size=size, prompt_field=self.prompt_field,
                          answer_field=self.answer_field, verifier=self.verifier)


def load_benchmark(spec: BenchmarkSpec) -> list[Row]:
    cfg = spec.task_config()
    if cfg.source in ("jsonl", "hf") and not cfg.path:
        raise TaskError(f"benchmark {spec.name} needs --data <file, datasets folder or Hub id> "
                        "(and --answer-field if not 'answer')")
    rows = evaluation_rows(cfg, label=f"unknown benchmark {spec.name!r}")
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        if row["id"] in seen:
            raise TaskError(f"benchmark {spec.name}: question id {row['id']!r} appears twice (rows {seen[row['id']] + 1} "
                            f"and {i + 1}); ids key the resumable sample log, so they must be unique")
        seen[row["id"]] = i
    if not rows:
        raise TaskError(f"benchmark {spec.name}: no questions")
    return rows[: spec.limit] if spec.limit else rows
