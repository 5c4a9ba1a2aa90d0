"""`r1lab sft`: flags -> SFTConfig -> r1lab.sft.train_sft. cli.py registers it with `app.command()(sft)`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def sft(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Recipe YAML (recipes/sft_*.yaml)."),
    model: Optional[str] = typer.Option(None, help="Model alias, local checkpoint dir or hub id."),
    data: Optional[str] = typer.Option(None, help="JSONL of chat rows ({messages}) or prompt/completion rows."),
    epochs: Optional[float] = typer.Option(None, help="Passes over the data (ignored if train.steps > 0)."),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="Run directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in output-dir from its last checkpoint."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Any config field, e.g. --set train.lr=2e-5 (repeatable)."),
):
    """Supervised fine-tuning: loss on the replies only, packed samples, LoRA optional."""
    from r1lab.cli import USER_ERRORS, console, fail  # here, not at the top: cli.py imports this module
    from r1lab.config import load_config
    from r1lab.sft import SFTConfig, train_sft

    flags = {"model.name": model, "data.path": data, "train.epochs": epochs, "run.output_dir": output_dir}
    extra = [f"{k}={v}" for k, v in flags.items() if v is not None]
    try:
        cfg = load_config(SFTConfig, config, [*extra, *overrides])
        run = train_sft(cfg, resume=resume)
    except USER_ERRORS as err:
        fail(err)
    console.print(f"run written to [bold]{run.root}[/] (metrics.jsonl, plot.png, checkpoints/)")
