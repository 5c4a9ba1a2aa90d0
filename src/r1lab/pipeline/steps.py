"""The building blocks every staged recipe composes: evaluate a model, run GRPO, sample + filter traces, SFT.

Each block takes a stage directory, writes only inside it, and resumes from what is already there.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import torch

from r1lab import dist
from r1lab.config import to_yaml
from r1lab.data import Row, load_task
from r1lab.data.base import TaskConfig
from r1lab.data.prompts import PromptConfig
from r1lab.eval.metrics import wilson_interval
from r1lab.models import ModelConfig, load_model, load_tokenizer
from r1lab.pipeline.config import RLStageConfig, StagedRunConfig, StageEvalConfig, TeacherConfig, TracesConfig
from r1lab.pipeline.generate import GenerateConfig, generate_traces
from r1lab.pipeline.rejection import reject_file
from r1lab.pipeline.stages import Stages
from r1lab.resources import find_file
from r1lab.rl.config import RunConfig, ZeroConfig
from r1lab.rl.heldout import evaluate_heldout
from r1lab.rl.trainer import train_zero
from r1lab.rollout import SamplingParams
from r1lab.rollout.factory import make_engine
from r1lab.runs import RunDir
from r1lab.runs.rundir import atomic_write_text
from r1lab.sft.config import SFTConfig, SFTDataConfig, SFTRunConfig, SFTTrainConfig
from r1lab.sft.trainer import train_sft


class StageError(RuntimeError):
    """A stage cannot go on (e.g. rejection kept nothing); the message says which stage and why."""


def final_checkpoint(run_root: Path) -> str:
    """The run's last checkpoint, as rank 0 (which wrote it) sees it, on every rank: the SFT trainer does not wait
    for rank 0's last save, so another rank looking itself could find none yet, or the one before."""
    return dist.on_rank0(lambda: _final_checkpoint(run_root))


def _final_checkpoint(run_root: Path) -> str:
    checkpoint = RunDir(run_root, rank=1).latest_checkpoint()  # rank 1: read-only view, creates nothing
    if checkpoint is None:
        raise StageError(f"{run_root}: the run finished without a checkpoint")
    return str(checkpoint)


def evaluate_model(model: str, rows: list[Row], prompt: PromptConfig, cfg: StageEvalConfig, engine: str,
                   seed: int = 0) -> dict:
    """Held-out pass@1 (greedy by default) with its n and Wilson 95% interval, plus readability numbers."""
    if not cfg.size or not rows:
        return {}
    rows = rows[: cfg.size]
    tokenizer = load_tokenizer(model)
    policy = load_model(model).eval()
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, logprobs=False)
    with torch.no_grad():
        found = evaluate_heldout(make_engine(engine, policy, tokenizer), tokenizer, rows, prompt, params,
                                 seed=seed, batch_size=cfg.batch_size)
    n = len(rows)
    correct = round(found["eval/accuracy"] * n)
    low, high = wilson_interval(correct, n)
    return {"n": n, "accuracy": found["eval/accuracy"], "accuracy_ci95": [low, high],
            "accuracy_lenient": found["eval/accuracy_lenient"], "format": found["eval/format"],
            "language": found["eval/language"], "length_mean": found["eval/length_mean"]}


def open_staged_run(cfg: StagedRunConfig, log: Callable[[str], None]) -> tuple[Stages, Callable[[str], dict]]:
    """The opening every staged recipe shares: threads, the stage tracker with
    rank 0 as the writer, config.yaml, and the evaluator every stage's model goes through."""
    dist.init_from_env()  # under torchrun every rank trains; rank 0 alone samples, evaluates and writes
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    root = Path(cfg.output_dir)
    stages = Stages(root, is_writer=dist.rank() == 0, log=log)
    if stages.is_writer:
        atomic_write_text(root / "config.yaml", to_yaml(cfg))
    held_out = load_task(cfg.task).test

    def evaluate(model: str) -> dict:
        return dist.on_rank0(lambda: evaluate_model(model, held_out, cfg.prompt, cfg.eval, cfg.engine))

    return stages, evaluate


def run_rl(stage_dir: Path, start_model: str, cfg: RLStageConfig, task: TaskConfig, prompt: PromptConfig,
           engine: str, threads: int, progress: bool = True) -> str:
    """GRPO from `start_model` into stage_dir/run (resumed if interrupted); returns the final checkpoint."""
    zero = ZeroConfig(model=ModelConfig(name=start_model), task=task, prompt=prompt, rewards=dict(cfg.rewards),
                      grpo=cfg.grpo, engine=engine, threads=threads,
                      run=RunConfig(output_dir=str(stage_dir / "run"), eval_every=cfg.eval_every,
                                    checkpoint_every=cfg.checkpoint_every, time_budget_s=cfg.time_budget_s))
    run = train_zero(zero, resume=True, progress=progress)
    return final_checkpoint(run.root)


def run_sft(stage_dir: Path, start_model: str, data: str, cfg: SFTTrainConfig, prompt: PromptConfig, threads: int,
            progress: bool = True) -> str:
    """SFT of `start_model` on `data` into stage_dir/run (resumed if interrupted); returns the final checkpoint."""
    sft = SFTConfig(model=ModelConfig(name=start_model), data=SFTDataConfig(path=data), prompt=prompt, train=cfg,
                    run=SFTRunConfig(output_dir=str(stage_dir / "run")), threads=threads)
    run = train_sft(sft, resume=True, progress=progress)
    return final_checkpoint(run.root)


def sample_and_filter(stage_dir: Path, teacher: TeacherConfig, task: TaskConfig, prompt: PromptConfig,
                      cfg: TracesConfig, engine: str, progress: bool = True) -> tuple[Path, dict]:
    """Teacher traces on training prompts (resumable file) -> rejection sampling -> an SFT set + its stats.
    Rank 0 samples and writes; the other ranks wait for its result."""
    return dist.on_rank0(lambda: _sample_and_filter(stage_dir, teacher, task, prompt, cfg, engine, progress))


def _sample_and_filter(stage_dir: Path, teacher: TeacherConfig, task: TaskConfig, prompt: PromptConfig,
                       cfg: TracesConfig, engine: str, progress: bool) -> tuple[Path, dict]:
    traces = stage_dir / "traces.jsonl"
    generate_traces(GenerateConfig(
        teacher="" if teacher.base_url else teacher.model, base_url=teacher.base_url, api_key=teacher.api_key,
        endpoint_model=teacher.model if teacher.base_url else "", concurrency=teacher.concurrency, engine=engine,
        task=task, split="train", limit=cfg.limit, n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens, prompt=prompt, batch_size=cfg.batch_size, seed=cfg.seed,
        output=str(traces)), progress=progress)
    kept = stage_dir / "sft_data.jsonl"
    stats = reject_file(traces, kept, cfg.rejection)
    if not stats["kept"]:
        raise StageError(f"{stage_dir.name}: rejection sampling kept none of {stats['input']} traces "
                         f"(dropped: {stats['dropped']}); sample more (traces.n, traces.limit), train the teacher "
                         f"longer, or relax traces.rejection")
    return kept, stats


def append_files(target: Path, extra: list[str]) -> int:
    """Append whole JSONL files (e.g. non-reasoning SFT samples) to target; returns lines added."""
    added = 0
    with target.open("a", encoding="utf-8") as out:
        for name in extra:
            path = Path(name)
            if not path.is_file():
                raise FileNotFoundError(f"rejection.extra_data: {path} not found")
            with path.open(encoding="utf-8") as src:
                for line in src:
                    if line.strip():
                        out.write(line if line.endswith("\n") else line + "\n")
                        added += 1
    return added


def copy_into(stage_dir: Path, data: str) -> Path:
    """A stage keeps its own copy of a user-given data file, so the run stays reproducible if the file changes.
    Rank 0 copies; the other ranks wait for the copy (they read it next)."""
    return dist.on_rank0(lambda: _copy_into(stage_dir, data))


def _copy_into(stage_dir: Path, data: str) -> Path:
    source = find_file(data)
    if not source.is_file():
        raise FileNotFoundError(f"cold_start.data: {source} not found")
    target = stage_dir / "sft_data.jsonl"
    shutil.copyfile(source, target)
    return target
