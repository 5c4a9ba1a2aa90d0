"""Tasks: rows of {id, question, answer, verifier, metadata}; train and held-out splits never overlap.

`verifier` names the rule in `r1lab.rewards.verifiers` that scores an extracted answer for this row,
so tasks stay data and a new verifier is one registered function.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict


class Row(TypedDict, total=False):
    id: str
    question: str
    answer: str
    verifier: str  # "reasoning_gym" | "math" | "numeric" | "exact" | "code" | any registered name
    metadata: dict[str, Any]


class TaskError(ValueError):
    """Bad task spec or data file; the message names the file, line or field."""


@dataclass
class Task:
    name: str
    train: list[Row]
    test: list[Row]

    def __post_init__(self):
        seen = {r["question"] for r in self.train}
        overlap = [r["id"] for r in self.test if r["question"] in seen]
        if overlap:
            raise TaskError(f"task {self.name}: held-out rows {overlap[:5]} also appear in train")

    def require_train(self, cfg: "TaskConfig") -> None:
        """A trainer's check: at least one row to train on (a small file can be all held out)."""
        if not self.train:
            where = cfg.path or f"task {self.name}"
            raise TaskError(f"{where}: no rows left to train on (task.test_size={cfg.test_size} held out "
                            f"{len(self.test)}); lower task.test_size or add rows")

    def split(self, name: str) -> list[Row]:
        if name not in ("train", "test"):
            raise TaskError(f"task {self.name}: split must be 'train' or 'test', got {name!r}")
        return self.train if name == "train" else self.test


@dataclass
class TaskConfig:
    """Which task to train/evaluate on. `source` picks the loader (data/registry.py); the rest are its arguments."""

    # reasoning_gym | gsm8k | math500 | aime24 | humaneval | jsonl | hf, a reasoning-gym dataset name,
    # a Hub id, or the user's own task: package.module:function / path/to/file.py:function
    source: str = "reasoning_gym"
    name: str = "chain_sum"  # reasoning-gym dataset name (ignored by other sources)
    path: str = ""  # hf / jsonl: Hub id, datasets folder or data file; gsm8k / benchmarks: a file instead of the bundled one
    kwargs: dict[str, Any] = field(default_factory=dict)  # reasoning-gym dataset options; a user task's keyword arguments
    train_size: int = 2000
    test_size: int = 200
    seed: int = 0
    split: str = ""  # hf: which split of a Hub dataset or saved DatasetDict ("" = train)
    prompt_field: str = ""  # hf / jsonl / user rows: question column, dotted for nested ("" guesses prompt, question, problem)
    answer_field: str = ""  # hf / jsonl / user rows: gold answer column, dotted ("" = answer)
    transform: str = ""  # hf / jsonl / user rows: module:function or file.py:function, record -> record (None drops it)
    verifier: str = ""  # override every row's verifier (default: the row's own, else "math")
