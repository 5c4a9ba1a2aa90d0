"""`r1lab zero` (R1-Zero GRPO) and `r1lab sft`: flags -> ZeroConfig / SFTConfig -> one trainer call."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from r1lab.cli.errors import console, reported


def _flags(flags: dict) -> list[str]:
    return [f"{k}={v}" for k, v in flags.items() if v is not None]


def zero(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Recipe: a YAML file, or a bundled recipe's name (`r1lab recipes`)."),
    model: Optional[str] = typer.Option(None, help="Model alias, local checkpoint dir or hub id."),
    task: Optional[str] = typer.Option(None, help="Task (task.source): gsm8k, a reasoning-gym dataset (chain_sum), a Hub id, "
                                                  "module:function; the names `r1lab eval -b` takes."),
    steps: Optional[int] = typer.Option(None, help="GRPO steps."),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="Run directory."),
    engine: Optional[str] = typer.Option(None, help="Rollout backend: auto (default: native where it knows the model, else hf), native, hf or vllm (GPU)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in output-dir from its last checkpoint "
                                                        "(starts a new one, and says so, where there is none)."),
    fsdp: bool = typer.Option(False, "--fsdp", help="Under torchrun: shard weights, grads and optimizer (FSDP2), not DDP."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log scalars to RUN_DIR/tensorboard/."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Any config field, e.g. --set grpo.lr=2e-5 (repeatable)."),
):
    """R1-Zero: pure GRPO with rule-based rewards, no SFT. Multi-GPU: torchrun ... -m r1lab zero (docs/distributed.md)."""
    from r1lab.config import load_config
    from r1lab.rl.config import ZeroConfig
    from r1lab.rl.trainer import train_zero

    flags = {"model.name": model, "task.source": task, "grpo.steps": steps, "run.output_dir": output_dir, "engine": engine,
             "fsdp": True if fsdp else None, "run.tensorboard": True if tensorboard else None}
    with reported():
        cfg = load_config(ZeroConfig, config, [*_flags(flags), *overrides])
        run = train_zero(cfg, resume=resume)
    if run.is_writer:  # rank 0 under torchrun
        console.print(f"run written to [bold]{run.root}[/] (metrics.jsonl, samples.jsonl, plot.png, checkpoints/)")


def sft(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Recipe: a YAML file, or a bundled recipe's name (`r1lab recipes`)."),
    model: Optional[str] = typer.Option(None, help="Model alias, local checkpoint dir or hub id."),
    data: Optional[str] = typer.Option(None, help="JSONL of chat rows ({messages}) or prompt/completion rows."),
    epochs: Optional[float] = typer.Option(None, help="Passes over the data (ignored if train.steps > 0)."),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="Run directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in output-dir from its last checkpoint."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Any config field, e.g. --set train.lr=2e-5 (repeatable)."),
):
    """Supervised fine-tuning: loss on the replies only, packed samples, LoRA optional."""
    from r1lab.config import load_config
    from r1lab.sft import SFTConfig, train_sft

    flags = {"model.name": model, "data.path": data, "train.epochs": epochs, "run.output_dir": output_dir}
    with reported():
        cfg = load_config(SFTConfig, config, [*_flags(flags), *overrides])
        run = train_sft(cfg, resume=resume)
    console.print(f"run written to [bold]{run.root}[/] (metrics.jsonl, plot.png, checkpoints/)")
