from r1lab.data.base import Row, Task, TaskConfig, TaskError
from r1lab.data import builtin  # noqa: F401  (registers the built-in task sources)
from r1lab.data.registry import evaluation_rows, load_task, register_source, source_names

__all__ = ["Row", "Task", "TaskConfig", "TaskError", "evaluation_rows", "load_task", "register_source",
           "source_names"]
