"""A user's own task: `task.source: my_task.py:make_rows` (or `package.module:function`).

The function is called with `task.kwargs` as keyword arguments and returns either a `Task` (its own
train / held-out split) or rows: dicts with a question (or `prompt_field`), an answer and a verifier.
A verifier may be a registered name, a `module:function` reference, or the function itself (it is then
registered under `<module>.<name>`, so rows stay plain data that logs and ranks can carry).
"""
from __future__ import annotations

from r1lab.config import config_dir
from r1lab.data.base import Row, Task, TaskConfig, TaskError
from r1lab.data.registry import Source, split_rows
from r1lab.data.tables import records_to_rows
from r1lab.refs import resolve_callable
from r1lab.reward_registry import register_verifier


def _verifier_name(verifier) -> str:
    if isinstance(verifier, str) or verifier is None:
        return verifier
    if not callable(verifier):
        raise TaskError(f"a row's verifier is a {type(verifier).__name__}; expected a name or a function")
    name = f"{getattr(verifier, '__module__', 'user')}.{getattr(verifier, '__name__', 'verifier')}"
    register_verifier(name)(verifier)
    return name


def _rows(ref: str, cfg: TaskConfig, records: list) -> list[Row]:
    if not isinstance(records, (list, tuple)):
        raise TaskError(f"task.source={ref}: returned a {type(records).__name__}; expected a Task or a list of row dicts")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise TaskError(f"task.source={ref}: row {i} is a {type(record).__name__}, expected a dict")
    named = [{**r, "verifier": _verifier_name(r["verifier"])} if "verifier" in r else r for r in records]
    return records_to_rows([(f"{ref} row {i}", r) for i, r in enumerate(named)], cfg, ref.rpartition(":")[2])


def _call(ref: str, cfg: TaskConfig):
    fn = resolve_callable(ref, [config_dir(cfg)])
    try:
        return fn(**cfg.kwargs)
    except TypeError as err:
        raise TaskError(f"task.source={ref} called with task.kwargs={cfg.kwargs}: {err}") from None


def _named_task(made: Task) -> Task:
    fix = [Row(**{**r, "verifier": _verifier_name(r.get("verifier"))}) for r in made.train + made.test]
    return Task(made.name, fix[: len(made.train)], fix[len(made.train):])


def user_source(ref: str) -> Source:
    def load(cfg: TaskConfig) -> Task:
        made = _call(ref, cfg)
        if isinstance(made, Task):
            return _named_task(made)
        train, test = split_rows(_rows(ref, cfg, made), cfg, ref)
        return Task(ref, train, test)

    def eval_rows(cfg: TaskConfig) -> list[Row]:  # a Task's held-out split, else every row
        made = _call(ref, cfg)
        return _named_task(made).test if isinstance(made, Task) else _rows(ref, cfg, made)

    return Source(ref, load, eval_rows, "the user's own task")
