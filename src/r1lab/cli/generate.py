"""`r1lab generate` and `r1lab reject`: flags -> GenerateConfig / RejectionConfig -> r1lab.pipeline.

r1lab.cli registers them; no logic lives here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from r1lab.cli.errors import console, reported


def generate(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML of GenerateConfig fields; flags override it."),
    teacher: Optional[str] = typer.Option(None, help="Local teacher: model alias, checkpoint dir or hub id."),
    base_url: Optional[str] = typer.Option(None, help="Endpoint teacher: OpenAI-compatible base URL, e.g. http://host:8000/v1."),
    api_key: Optional[str] = typer.Option(None, envvar="R1LAB_TEACHER_API_KEY",
                                          help="Endpoint bearer key (or set R1LAB_TEACHER_API_KEY)."),
    model: Optional[str] = typer.Option(None, help="Endpoint teacher: the model name sent with each request."),
    task: Optional[str] = typer.Option(None, help="Task (task.source): gsm8k, a reasoning-gym dataset, a Hub id, module:function."),
    n: Optional[int] = typer.Option(None, "--n", help="Samples per prompt (default 4)."),
    limit: Optional[int] = typer.Option(None, help="First n prompts of the split (default all)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Trace file (default traces.jsonl); rerun to resume."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Any config field, e.g. --set temperature=1.0 (repeatable)."),
):
    """Sample n traces per prompt from a teacher (local model or OpenAI-compatible endpoint) into a JSONL file."""
    from r1lab.config import load_config
    from r1lab.pipeline.generate import GenerateConfig, generate_traces

    flags = {"teacher": teacher, "base_url": base_url, "api_key": api_key, "endpoint_model": model,
             "task.source": task, "n": n, "limit": limit, "output": output}
    # JSON-quoted so a key or name like "yes" or "123" stays a string when the override is read as YAML
    extra = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    with reported():
        cfg = load_config(GenerateConfig, config, [*extra, *overrides])
        path = generate_traces(cfg)
    console.print(f"traces written to [bold]{path}[/] (rerun the same command to resume or extend)")


def reject(
    input: Path = typer.Argument(..., help="Trace file from `r1lab generate`."),
    output: Path = typer.Argument(..., help="SFT set to write (JSONL); stats go to <output>.stats.json."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML of RejectionConfig fields."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Any RejectionConfig field, e.g. --set max_per_prompt=2."),
):
    """Rejection sampling: keep correct, closed, single-language, non-repetitive traces; write stats by drop reason."""
    from r1lab.config import load_config
    from r1lab.pipeline.rejection import RejectionConfig, reject_file, stats_path

    with reported():
        cfg = load_config(RejectionConfig, config, overrides)
        stats = reject_file(input, output, cfg)
    dropped = ", ".join(f"{reason} {count}" for reason, count in stats["dropped"].items() if count) or "none"
    console.print(f"kept {stats['kept']} of {stats['input']} samples ({stats['prompts_with_kept']} of "
                  f"{stats['prompts']} prompts); dropped: {dropped}")
    console.print(f"SFT set: [bold]{output}[/]; stats: {stats_path(output)}")
