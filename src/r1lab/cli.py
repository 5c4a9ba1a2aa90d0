"""The `r1lab` command. Each command parses flags into a config and calls one library function."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from r1lab.config import ConfigError, load_config

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Reproduce DeepSeek-R1 on your own models: R1-Zero GRPO, the R1 recipe, distillation, eval, serving.")
console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Reproduce DeepSeek-R1 on your own models. Set R1LAB_DEBUG=1 for full tracebacks."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # r1lab draws its own progress; per-shard bars only add noise

USER_ERRORS = (ConfigError, ValueError, FileNotFoundError, FileExistsError, KeyError, ImportError)


def fail(err: Exception) -> None:
    if os.environ.get("R1LAB_DEBUG"):
        raise err
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


@app.command()
def zero(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Recipe YAML (recipes/zero_*.yaml)."),
    model: Optional[str] = typer.Option(None, help="Model alias, local checkpoint dir or hub id."),
    task: Optional[str] = typer.Option(None, help="reasoning-gym dataset name (task.source=reasoning_gym)."),
    steps: Optional[int] = typer.Option(None, help="GRPO steps."),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="Run directory."),
    engine: Optional[str] = typer.Option(None, help="Rollout backend: hf, native or vllm (GPU)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in output-dir from its last checkpoint."),
    fsdp: bool = typer.Option(False, "--fsdp", help="Under torchrun: shard weights, grads and optimizer (FSDP2), not DDP."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log scalars to RUN_DIR/tensorboard/."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Any config field, e.g. --set grpo.lr=2e-5 (repeatable)."),
):
    """R1-Zero: pure GRPO with rule-based rewards, no SFT. Multi-GPU: torchrun ... -m r1lab zero (docs/distributed.md)."""
    from r1lab.rl.config import ZeroConfig
    from r1lab.rl.trainer import train_zero

    flags = {"model.name": model, "task.name": task, "grpo.steps": steps, "run.output_dir": output_dir, "engine": engine,
             "fsdp": True if fsdp else None, "run.tensorboard": True if tensorboard else None}
    extra = [f"{k}={v}" for k, v in flags.items() if v is not None]
    try:
        cfg = load_config(ZeroConfig, config, [*extra, *overrides])
        run = train_zero(cfg, resume=resume)
    except USER_ERRORS as err:
        fail(err)
    if run.is_writer:  # rank 0 under torchrun
        console.print(f"run written to [bold]{run.root}[/] (metrics.jsonl, samples.jsonl, plot.png, checkpoints/)")


@app.command()
def serve(
    model: str = typer.Option(..., help="Model alias, local checkpoint dir or hub id."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 exposes it to the network)."),
    port: int = typer.Option(8000, help="TCP port."),
    api_key: Optional[str] = typer.Option(None, envvar="R1LAB_API_KEY",
                                          help="Require 'Authorization: Bearer KEY' (or set R1LAB_API_KEY)."),
    served_model_name: Optional[str] = typer.Option(None, help="Model id clients send; default: the model's name."),
    think_prefill: bool = typer.Option(True, "--think-prefill/--no-think-prefill",
                                       help="Open every reply with '<think>\\n' so the model thinks first."),
    max_tokens: int = typer.Option(1024, help="Default max_tokens for requests that set none."),
    max_batch: int = typer.Option(64, help="Sequences decoded together."),
    max_queue: int = typer.Option(256, help="Requests allowed to wait; more get HTTP 429."),
    threads: Optional[int] = typer.Option(None, help="Torch CPU threads (default: one per core)."),
):
    """OpenAI-compatible chat server: reasoning_content beside content, streaming, a chat page at /."""
    from r1lab.serve.app import run_server

    try:
        run_server(model, host=host, port=port, api_key=api_key, served_model_name=served_model_name,
                   think_prefill=think_prefill, default_max_tokens=max_tokens, max_batch=max_batch,
                   max_waiting=max_queue, threads=threads)
    except USER_ERRORS as err:
        fail(err)


# The other commands live beside this file, one module per stage of the data flow.
from r1lab.cli_eval import eval_app  # noqa: E402
from r1lab.cli_generate import generate, reject  # noqa: E402
from r1lab.cli_pipeline import distill, paper_mini, pipeline  # noqa: E402
from r1lab.cli_report import report  # noqa: E402
from r1lab.cli_sft import sft  # noqa: E402

app.add_typer(eval_app, name="eval", help="pass@1 over k samples, cons@k, pass@k on a benchmark; `eval compare` runs.")
for command in (sft, generate, reject, distill, pipeline, report):
    app.command()(command)
app.command("paper-mini")(paper_mini)


def main() -> None:
    app()
