"""A rich progress bar that shows the numbers a GRPO user watches: reward, accuracy, format, length."""
from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainingProgress:
    def __init__(self, total: int, done: int = 0, enabled: bool = True):
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]GRPO"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"), disable=not enabled,
        )
        self.task = self.progress.add_task("grpo", total=total, completed=done, info="")
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
        parts = []
        if "reward/total" in metrics:
            parts.append(f"reward {metrics['reward/total']:.2f}  acc {metrics['train/accuracy']:.2f}  "
                         f"fmt {metrics['train/format']:.2f}  len {metrics['completion/length_mean']:.0f}  "
                         f"{metrics['time/step']:.1f}s/step")
        if self.last_eval:
            parts.append(self.last_eval)
        self.progress.update(self.task, completed=step, info="  |  ".join(parts))
