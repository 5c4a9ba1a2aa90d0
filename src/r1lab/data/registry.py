"""One task registry: training, evaluation and the pipeline look every task up here.

A `task.source` (and `r1lab eval -b`) is one of:
- a registered source: reasoning_gym, gsm8k, math500, aime24, humaneval, jsonl, hf (see `source_names()`);
- a reasoning-gym dataset name (chain_sum): the reasoning_gym source with that `task.name`;
- a Hub id (org/name): the hf source with that `task.path`;
- `package.module:function` or `path/to/file.py:function`: the user's own task (data/user.py).
A source gives the train / held-out `Task`, and optionally `eval_rows`: every row of a benchmark file in
its order (evaluation scores all of them); without it evaluation takes the task's held-out split.
"""
from __future__ import annotations

import copy
import dataclasses
import random
from dataclasses import dataclass
from typing import Callable

from r1lab.config import config_dir
from r1lab.data.base import Row, Task, TaskConfig, TaskError
from r1lab.resources import find_file


@dataclass(frozen=True)
class Source:
    name: str
    load: Callable[[TaskConfig], Task]
    eval_rows: Callable[[TaskConfig], list[Row]] | None = None
    summary: str = ""


_SOURCES: dict[str, Source] = {}


def register_source(name: str, load: Callable[[TaskConfig], Task],
                    eval_rows: Callable[[TaskConfig], list[Row]] | None = None, summary: str = "") -> Source:
    _SOURCES[name] = Source(name, load, eval_rows, summary)
    return _SOURCES[name]


def register_rows_source(name: str, rows: Callable[[TaskConfig], list[Row]], summary: str = "",
                         held_out_only: bool = False) -> Source:
    """A source that is one pool of rows: training splits it (`split_rows`); a benchmark (held_out_only) is all test."""
    def load(cfg: TaskConfig) -> Task:
        pool = rows(cfg)
        if held_out_only:
            return Task(name, [], pool[: cfg.test_size] if cfg.test_size else pool)
        train, test = split_rows(pool, cfg, name)
        return Task(name, train, test)
    return register_source(name, load, rows, summary)


def source_names() -> list[str]:
    return sorted(_SOURCES)


def _reasoning_gym_names() -> set[str]:
    import reasoning_gym.factory

    return set(reasoning_gym.factory.DATASETS)


def resolve(cfg: TaskConfig, label: str = "") -> tuple[Source, TaskConfig]:
    """The source `cfg.source` names and the config it runs with (aliases filled in); `label` starts an error."""
    from r1lab.data.hub import is_hub_id
    from r1lab.refs import is_reference

    name = cfg.source
    cfg = _located(cfg)
    if name in _SOURCES:
        return _SOURCES[name], cfg
    if is_reference(name):
        from r1lab.data.user import user_source

        return user_source(name), cfg
    if name in _reasoning_gym_names():
        return _SOURCES["reasoning_gym"], dataclasses.replace(cfg, source="reasoning_gym", name=name)
    if is_hub_id(name):
        return _SOURCES["hf"], dataclasses.replace(cfg, source="hf", path=name)
    raise TaskError(f"{label or f'task.source={name!r}'}: expected one of {', '.join(source_names())}, a reasoning-gym dataset "
                    "(e.g. chain_sum), a Hub id (org/name), or module:function / path/to/file.py:function")


def _located(cfg: TaskConfig) -> TaskConfig:
    """`task.path` found as the user meant it: as given, beside the recipe, else a file bundled with r1lab."""
    if not cfg.path:
        return cfg
    found = str(find_file(cfg.path, config_dir(cfg)))
    if found == cfg.path:
        return cfg
    located = copy.copy(cfg)  # keeps the recipe folder the config remembers (dataclasses.replace would not)
    located.path = found
    return located


def load_task(cfg: TaskConfig) -> Task:
    """Train and held-out rows of the task `cfg` names; they never share a question."""
    source, cfg = resolve(cfg)
    return source.load(cfg)


def evaluation_rows(cfg: TaskConfig, label: str = "") -> list[Row]:
    """The rows a benchmark scores: a file's every row in order, or the source's held-out split."""
    source, cfg = resolve(cfg, label)
    return source.eval_rows(cfg) if source.eval_rows else source.load(cfg).test


def split_rows(rows: list[Row], cfg: TaskConfig, name: str) -> tuple[list[Row], list[Row]]:
    """Held-out = the first `test_size` distinct questions of a seeded shuffle; train = the rows of every other
    question, in that shuffled order. By content: a question that appears twice lands on one side only."""
    where = cfg.path or f"task {name}"
    if not rows:
        raise TaskError(f"{where}: the dataset has no rows")
    distinct = len({r["question"].strip() for r in rows})
    if cfg.test_size >= distinct:
        raise TaskError(f"{where}: no rows left to train on: task.test_size={cfg.test_size} but the dataset has only "
                        f"{distinct} distinct questions (lower task.test_size)")
    order = list(range(len(rows)))
    random.Random(cfg.seed).shuffle(order)
    test, held = [], set()
    for i in order:
        question = rows[i]["question"].strip()
        if len(held) < cfg.test_size and question not in held:
            held.add(question)
            test.append(rows[i])
    train = [rows[i] for i in order if rows[i]["question"].strip() not in held][: cfg.train_size]
    return train, test
