"""`r1lab eval ...` and `r1lab eval compare ...`: flags -> EvalConfig -> r1lab.eval; mounted by r1lab.cli as
`eval`. No evaluation logic lives here."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from r1lab.cli.errors import reported
from r1lab.config import ConfigError, load_config

eval_app = typer.Typer(help="Evaluate a model with R1's protocol: k samples per question, pass@1 ± se, cons@k, pass@k.",
                       no_args_is_help=False)


def _build_engine(cfg, engine: str, dtype, device: str):
    from r1lab.models import load_model, load_tokenizer
    from r1lab.rollout.factory import ENGINES, make_engine

    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {list(ENGINES)}, got {engine!r}")
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, dtype=dtype, device=device)
    return make_engine(engine, model, tokenizer, max_batch_size=cfg.batch_size), tokenizer


@eval_app.callback(invoke_without_command=True)
def evaluate(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="alias (smollm2-135m), checkpoint dir or hub id"),
    benchmark: Optional[str] = typer.Option(None, "--benchmark", "-b",
                                            help="math500 | aime24 | gsm8k | humaneval | jsonl | reasoning-gym name | hub id"),
    k: Optional[int] = typer.Option(None, "--k", "-k", help="samples per question (default 8)"),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="default 0.6"),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="default 0.95"),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="default 1024"),
    prompt_style: Optional[str] = typer.Option(None, "--prompt-style", help="r1 | zero | chat (default r1)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="first n questions (default all)"),
    data: Optional[str] = typer.Option(None, "--data", help="benchmark file (required for jsonl)"),
    prompt_field: Optional[str] = typer.Option(None, "--prompt-field", help="jsonl question field (default guessed)"),
    answer_field: Optional[str] = typer.Option(None, "--answer-field", help="jsonl gold answer field (default answer)"),
    verifier: Optional[str] = typer.Option(None, "--verifier", help="jsonl verifier name (default math)"),
    task_kwargs: Optional[str] = typer.Option(None, "--task-kwargs", help='reasoning-gym options as JSON, e.g. \'{"max_terms": 3}\''),
    lenient: Optional[bool] = typer.Option(None, "--lenient/--strict", help="fall back to the reply's last number (default strict)"),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="default runs/eval/<model>/<setup>; rerun to resume"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="samples per generate call (default 32)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="default 0"),
    stop: Optional[list[str]] = typer.Option(None, "--stop", help="end a reply at this text, kept in it (repeatable), e.g. --stop '</answer>'"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML of EvalConfig fields; flags override it"),
    engine: str = typer.Option("auto", "--engine", help="rollout backend: auto (native where it knows the model, else hf) | native | hf (transformers generate) | vllm (GPU)"),
    dtype: str = typer.Option("float32", "--dtype", help="float32 | bfloat16 | float16"),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    flags = dict(model=model, benchmark=benchmark, k=k, temperature=temperature, top_p=top_p,
                 max_new_tokens=max_new_tokens, prompt_style=prompt_style, limit=limit, data=data,
                 prompt_field=prompt_field, answer_field=answer_field, verifier=verifier, lenient=lenient,
                 output_dir=output_dir, batch_size=batch_size, seed=seed, stop=stop or None)
    overrides = [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
    from r1lab.eval import EvalConfig, run_eval  # imports torch: here, so that `--help` stays fast
    from r1lab.eval.report import summary_table

    with reported():
        if task_kwargs is not None:
            try:
                overrides.append(f"task_kwargs={json.dumps(json.loads(task_kwargs))}")
            except json.JSONDecodeError as err:
                raise ConfigError(f"--task-kwargs: not valid JSON ({err.msg}): {task_kwargs}") from None
        cfg = load_config(EvalConfig, config, overrides)
        if not cfg.model:
            raise ConfigError("--model is required (or `model:` in --config)")
        from r1lab.precision import DTYPES

        if dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        sampler, tokenizer = _build_engine(cfg, engine, DTYPES[dtype], device)
        console = Console()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(f"{cfg.benchmark} k={cfg.k}", total=None)
            summary = run_eval(cfg, sampler, tokenizer,
                               on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    console.print(summary_table(summary))
    console.print(f"samples and summary.json in {summary['run_dir']}", highlight=False)


@eval_app.command("compare")
def compare(runs: List[Path] = typer.Argument(..., help="eval folders (or their summary.json)")) -> None:
    """One table of several evaluations."""
    from r1lab.eval import load_summary
    from r1lab.eval.report import comparison_table

    with reported():
        summaries = [load_summary(run) for run in runs]
    # a comparison is wide; below 160 columns rich would squeeze every header to "pa…"
    Console(width=max(Console().width, 160)).print(comparison_table(summaries))
