from r1lab.data.base import Row, Task, TaskConfig, TaskError
from r1lab.data.sources import load_task

__all__ = ["Row", "Task", "TaskConfig", "TaskError", "load_task"]
