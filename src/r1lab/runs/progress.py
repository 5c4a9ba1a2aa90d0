"""A rich progress bar for any trainer; each trainer says which of its numbers the user watches."""
from __future__ import annotations

from typing import Callable

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def grpo_summary(metrics: dict[str, float]) -> str:
    """What a GRPO user watches: reward, accuracy, format, length."""
    if "reward/total" not in metrics:
        return ""
    return (f"reward {metrics['reward/total']:.2f}  acc {metrics['train/accuracy']:.2f}  "
            f"fmt {metrics['train/format']:.2f}  len {metrics['completion/length_mean']:.0f}  "
            f"{metrics['time/step']:.1f}s/step")


class TrainingProgress:
    def __init__(self, total: int, done: int = 0, enabled: bool = True, label: str = "GRPO",
                 describe: Callable[[dict[str, float]], str] = grpo_summary):
        self.enabled = enabled
        self.describe = describe
        self.progress = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"), disable=not enabled,
        )
        self.task = self.progress.add_task(label.lower(), total=total, completed=done, info="")
        self.last_eval = ""

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, step: int, metrics: dict[str, float]) -> None:
        if "eval/accuracy" in metrics:
            self.last_eval = f"held-out acc {metrics['eval/accuracy']:.2f} fmt {metrics['eval/format']:.2f}"
            if self.enabled:
                self.progress.console.log(f"step {step}: {self.last_eval}")
        parts = [p for p in (self.describe(metrics), self.last_eval) if p]
        self.progress.update(self.task, completed=step, info="  |  ".join(parts))
