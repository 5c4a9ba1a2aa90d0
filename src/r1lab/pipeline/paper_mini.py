"""`r1lab paper-mini`: the R1 paper's main findings, in miniature, from runs this package already knows how to make.

  0  step 0: where thinking pays (forced answer vs own reasoning vs right steps) on the untrained model
  a  R1-Zero: held-out accuracy, response length and reflection across GRPO steps   (the paper's Figures 2-3)
  b  pass@1 vs cons@k on the held-out set, before and after RL                       (Table 2 in small)
  c  distillation vs RL for the same student and the same wall time                  (Table 6 in small)
  d  R1 (cold start + multi-stage) vs R1-Zero (pure RL) from the same base           (accuracy and readability)

Each part is a stage of one resumable run (in the order 0, a, b, d, c: c's teacher may be a model d trains);
the runs it needs are the recipes named in its config, in their own output directories, so a finished
`r1lab zero` or `r1lab pipeline` run is reused, not redone. `*_seeds` run a part again with other seeds.
"""
from __future__ import annotations

import copy
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from r1lab.config import load_config, to_yaml
from r1lab.data import load_task
from r1lab.eval.thinking_pays import ThinkingPaysConfig, measure_level
from r1lab.eval.harness import EvalConfig, run_eval
from r1lab.models import load_model, load_tokenizer
from r1lab.precision import cpu_name
from r1lab.pipeline.config import DistillConfig, R1Config, StageEvalConfig
from r1lab.pipeline.distill import run_distill
from r1lab.pipeline.paper_report import PaperRecords, write_results
from r1lab.pipeline.r1 import run_r1
from r1lab.pipeline.stages import Stages
from r1lab.pipeline.steps import evaluate_model, final_checkpoint
from r1lab.rl.config import ZeroConfig
from r1lab.rl.trainer import train_zero
from r1lab.rollout.factory import make_engine
from r1lab.runs.rundir import atomic_write_text, read_jsonl_records


@dataclass
class VotingConfig:
    """Part b: R1's sampling protocol (§5) on the held-out questions of the R1-Zero task."""

    k: int = 8
    limit: int = 100
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 64
    batch_size: int = 64


PARTS = ("0", "a", "b", "c", "d")


@dataclass
class PaperMiniConfig:
    zero: str = "zero_smollm2_long"  # part a, the RL model of b, and the R1-Zero side of d
    r1: str = "r1_smollm2_long"  # part d's R1 side
    distill: str = "distill_smollm2_long"  # part c (its teacher may be a model part a or d trains)
    thinking_pays: ThinkingPaysConfig = field(default_factory=ThinkingPaysConfig)  # step 0, on the zero recipe's model
    voting: VotingConfig = field(default_factory=VotingConfig)
    # Each part again with these seeds (every random choice it makes; the task and its held-out split stay put):
    zero_seeds: list[int] = field(default_factory=list)  # a, and b's after-RL models
    r1_seeds: list[int] = field(default_factory=list)  # d
    distill_seeds: list[int] = field(default_factory=list)  # c
    parts: list[str] = field(default_factory=lambda: list(PARTS))  # a subset runs (and reports) only those
    output_dir: str = "runs/paper_mini"
    results: str = "docs/results/paper_mini.md"  # figures are written beside it

    def __post_init__(self) -> None:
        unknown = [part for part in self.parts if part not in PARTS]
        if unknown:
            raise ValueError(f"parts: unknown part(s) {unknown}; expected a subset of {list(PARTS)}")
        if {"b", "d"} & set(self.parts) and "a" not in self.parts:
            raise ValueError('parts: b and d compare with part a\'s R1-Zero models; add "a"')


def run_paper_mini(cfg: PaperMiniConfig, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    zero_cfg = load_config(ZeroConfig, cfg.zero)
    r1_cfg = load_config(R1Config, cfg.r1)
    distill_cfg = load_config(DistillConfig, cfg.distill)
    root = Path(cfg.output_dir)
    stages = Stages(root, log=log)
    atomic_write_text(root / "config.yaml", to_yaml(cfg))
    want = set(cfg.parts)
    step0 = stages.run("0_thinking_pays", lambda _: {"levels": _thinking_pays(zero_cfg, cfg.thinking_pays)}) \
        if "0" in want else None

    def zero(seed_cfg: ZeroConfig) -> dict:
        run = train_zero(seed_cfg, resume=True, progress=progress)
        model = final_checkpoint(run.root)
        scored = StageEvalConfig(size=seed_cfg.run.eval_size, max_new_tokens=seed_cfg.grpo.max_new_tokens,
                                 temperature=seed_cfg.run.eval_temperature)  # the trainer's held-out protocol
        return {"run": str(run.root), "model": model, "seed": seed_cfg.grpo.seed,
                "train_seconds": sum(r.get("time/step", 0.0) for r in run.read_metrics()),
                "final_eval": evaluate_model(model, load_task(seed_cfg.task).test, seed_cfg.prompt, scored,
                                             seed_cfg.engine)}

    zeros = [stages.run(_seed_stage("a_zero", seed), lambda _, c=seed_cfg: zero(c))
             for seed, seed_cfg in _seeded(zero_cfg, cfg.zero_seeds, _reseeded_zero)] if "a" in want else []

    def voting(stage_dir: Path) -> dict:
        models = [("before RL", zero_cfg.model.name)] + [(_after_rl(z, len(zeros)), z["model"]) for z in zeros]
        return {label: _vote(model, zero_cfg, cfg.voting, stage_dir / label.replace(" ", "_").replace(",", ""))
                for label, model in models}

    b = stages.run("b_voting", voting) if "b" in want else None
    zero_evals, ds = [], []
    if "d" in want:
        held_out = load_task(r1_cfg.task).test  # the questions and budget the R1 stages are scored on (every seed)
        zero_evals = stages.run("d_zero_evals", lambda _: {"evals": [
            evaluate_model(z["model"], held_out, r1_cfg.prompt, r1_cfg.eval, r1_cfg.engine) for z in zeros]})["evals"]
        ds = [stages.run(_seed_stage("d_r1", seed), lambda _, c=seed_cfg: {"r1": run_r1(c, progress=progress, log=log)})
              for seed, seed_cfg in _seeded(r1_cfg, cfg.r1_seeds, _reseeded_r1)]
    c = None
    if "c" in want:
        c = stages.run("c_distill", lambda _: {"summary": run_distill(distill_cfg, progress=progress, log=log)})
        more = stages.run("c_distill_seeds", lambda _: {"by_seed": {str(seed): run_distill(
            _reseeded(distill_cfg, seed), progress=progress, log=log) for seed in cfg.distill_seeds}})
        c["seeds"], c["seeds_seconds"] = more["by_seed"], more["seconds"]

    machine = f"{cpu_name()}, {platform.system()}, torch {torch.__version__} on CPU"
    results = Path(cfg.results)
    metrics = {z["seed"]: read_jsonl_records(Path(z["run"]) / "metrics.jsonl") for z in zeros}
    samples = {z["seed"]: read_jsonl_records(Path(z["run"]) / "samples.jsonl") for z in zeros}
    write_results(results, PaperRecords(machine=machine, model=zero_cfg.model.name, task=_task_words(zero_cfg),
                                        step0=step0, zeros=zeros, zero_metrics=metrics, zero_samples=samples, b=b,
                                        c=c, ds=ds, zero_evals=zero_evals, voting=cfg.voting,
                                        thinking=cfg.thinking_pays))
    record = {"0": step0, "a": zeros, "b": b, "c": c, "d": ds, "d_zero": zero_evals}
    atomic_write_text(root / "results.json", json.dumps(record, indent=2) + "\n")
    return results


def _thinking_pays(zero_cfg: ZeroConfig, cfg: ThinkingPaysConfig) -> list[dict]:
    """The step-0 table on the zero recipe's model, prompt and engine: where sampled reasoning beats answering at once."""
    tokenizer = load_tokenizer(zero_cfg.model.name)
    engine = make_engine(zero_cfg.engine, load_model(zero_cfg.model.name).eval(), tokenizer,
                         max_batch_size=cfg.prompts * cfg.samples, **zero_cfg.engine_options)
    with torch.no_grad():
        return [measure_level(engine, tokenizer, zero_cfg.prompt, level, cfg) for level in cfg.levels]


def _seed_stage(name: str, seed: int | None) -> str:
    return name if seed is None else f"{name}_seed{seed}"


def _seeded(cfg, seeds: list[int], reseed) -> list[tuple[int | None, object]]:
    """The recipe as written (seed None: its own seeds and output_dir), then one reseeded copy per extra seed."""
    return [(None, cfg)] + [(seed, reseed(cfg, seed)) for seed in seeds]


def _after_rl(zero: dict, seeds: int) -> str:
    return "after RL" if seeds == 1 else f"after RL, seed {zero['seed']}"


def _task_words(cfg: ZeroConfig) -> str:
    task = cfg.task
    what = task.name if task.source == "reasoning_gym" else f"{task.source} {task.path}".strip()
    options = ", ".join(f"{k}={v}" for k, v in task.kwargs.items())
    ending = "".join(f" (replies end at `{stop}`: nothing after it is sampled)" for stop in cfg.prompt.stops)
    return f"{what}{f' ({options})' if options else ''}, ≤ {cfg.grpo.max_new_tokens} new tokens{ending}"


def _reseeded_zero(cfg: ZeroConfig, seed: int) -> ZeroConfig:
    cfg = copy.deepcopy(cfg)
    cfg.run.output_dir = f"{cfg.run.output_dir}_seed{seed}"
    cfg.grpo.seed = seed
    return cfg


def _reseeded_r1(cfg: R1Config, seed: int) -> R1Config:
    """Every stage's sampling, SFT order and GRPO seed."""
    cfg = copy.deepcopy(cfg)
    cfg.output_dir = f"{cfg.output_dir}_seed{seed}"
    cs = cfg.cold_start
    cs.teacher_rl.grpo.seed = cs.traces.seed = cs.sft.seed = seed
    cfg.reasoning_rl.grpo.seed = cfg.rejection.seed = cfg.sft.seed = cfg.final_rl.grpo.seed = seed
    return cfg


def _reseeded(cfg: DistillConfig, seed: int) -> DistillConfig:
    """The same distillation-vs-RL comparison with another seed for every random choice it makes (teacher
    sampling, SFT sample order, the GRPO baseline's sampling); the task and its held-out split stay put."""
    cfg = copy.deepcopy(cfg)
    cfg.output_dir = f"{cfg.output_dir}_seed{seed}"
    cfg.traces.seed = cfg.sft.seed = cfg.compare_rl.grpo.seed = seed
    return cfg


def _vote(model: str, zero_cfg: ZeroConfig, voting: VotingConfig, output_dir: Path) -> dict:
    """k samples per held-out question at R1's temperature, through the evaluation harness (resumable)."""
    task = zero_cfg.task
    eval_cfg = EvalConfig(model=model, benchmark=task.name, task_kwargs=dict(task.kwargs), seed=task.seed,
                          k=voting.k, limit=voting.limit, temperature=voting.temperature, top_p=voting.top_p,
                          max_new_tokens=voting.max_new_tokens, prompt_style=zero_cfg.prompt.style,
                          batch_size=voting.batch_size, stop=zero_cfg.prompt.stops, output_dir=str(output_dir))
    tokenizer = load_tokenizer(model)
    engine = make_engine(zero_cfg.engine, load_model(model).eval(), tokenizer)
    summary = run_eval(eval_cfg, engine, tokenizer)
    # Samples of one question are correlated: the interval comes from the spread across questions.
    half = 1.96 * summary["pass@1_stderr"]
    summary["pass@1_ci95"] = [max(0.0, summary["pass@1"] - half), min(1.0, summary["pass@1"] + half)]
    return summary
