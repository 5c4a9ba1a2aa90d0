"""`r1lab pipeline` (the staged R1 recipe) and `r1lab distill` (teacher traces -> SFT of a student)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from r1lab.cli.errors import console, reported


def pipeline(
    recipe: Path = typer.Argument(..., help="Pipeline recipe YAML (recipes/r1_*.yaml)."),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="Where the stages write."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Any config field, e.g. --set final_rl.grpo.steps=20."),
):
    """The R1 recipe: cold-start SFT -> reasoning RL -> rejection sampling -> SFT -> final RL. Rerun to resume."""
    from r1lab.pipeline.config import R1Config
    from r1lab.pipeline.r1 import run_r1

    _run_staged(R1Config, recipe, [f"output_dir={output_dir}"] if output_dir else [], overrides, run_r1)


def distill(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Distillation recipe YAML (recipes/distill_*.yaml)."),
    teacher: Optional[str] = typer.Option(None, help="Teacher: local alias / checkpoint dir, or the endpoint's model name."),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint of the teacher, e.g. http://host:8000/v1."),
    api_key: Optional[str] = typer.Option(None, envvar="R1LAB_TEACHER_API_KEY", help="Endpoint API key."),
    student: Optional[str] = typer.Option(None, help="Student: alias, checkpoint dir or hub id."),
    task: Optional[str] = typer.Option(None, help="Task (task.source): gsm8k, a reasoning-gym dataset, a Hub id, module:function."),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o"),
    compare_rl: bool = typer.Option(False, "--compare-rl", help="Also train the student with GRPO for the same wall time."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Any config field, e.g. --set traces.n=8."),
):
    """Distillation: teacher traces -> rejection sampling -> SFT of the student, evaluated before and after."""
    from r1lab.pipeline.config import DistillConfig
    from r1lab.pipeline.distill import run_distill

    flags = {"teacher.model": teacher, "teacher.base_url": base_url, "teacher.api_key": api_key, "student": student,
             "task.source": task, "output_dir": output_dir, "compare_with_rl": True if compare_rl else None}
    _run_staged(DistillConfig, config, [f"{k}={v}" for k, v in flags.items() if v is not None], overrides, run_distill)


def _run_staged(cls, recipe: Optional[Path], flags: list[str], overrides: list[str], run) -> None:
    """Load a staged recipe (flags first, then --set), run it, print its summary table (rank 0 only)."""
    from r1lab.config import load_config

    with reported():
        cfg = load_config(cls, recipe, [*flags, *overrides])
        summary = run(cfg, log=console.log)
    typer.echo(Path(cfg.output_dir, "summary.md").read_text() if summary else "")


def paper_mini(
    config: Path = typer.Option(Path("recipes/paper_mini.yaml"), "--config", "-c", help="paper-mini recipe YAML."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Any config field, e.g. --set voting.k=4."),
):
    """The R1 paper in miniature: R1-Zero curves, majority voting, distillation vs RL, R1 vs R1-Zero. Resumable."""
    from r1lab.config import load_config
    from r1lab.pipeline.paper_mini import PaperMiniConfig, run_paper_mini

    with reported():
        results = run_paper_mini(load_config(PaperMiniConfig, config, overrides), log=console.log)
    console.print(f"results written to [bold]{results}[/] (figures beside it)")
