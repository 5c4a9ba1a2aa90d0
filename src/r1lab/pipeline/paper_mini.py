"""`r1lab paper-mini`: the R1 paper's main findings, in miniature, from runs this package already knows how to make.

  a  R1-Zero: held-out accuracy and response length across GRPO steps      (the paper's Figures 2-3)
  b  pass@1 vs cons@k on the held-out set, before and after RL              (Table 2 in small)
  c  distillation vs RL for the same student and the same wall time         (Table 6 in small)
  d  R1 (cold start + multi-stage) vs R1-Zero (pure RL) from the same base  (accuracy and readability)

Each part is a stage of one resumable run; the runs it needs are the recipes named in its config
(their own output directories, so a finished `make demo` or `r1lab pipeline` run is reused, not redone).
"""
from __future__ import annotations

import copy
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from r1lab.config import load_config, to_yaml
from r1lab.data import load_task
from r1lab.eval.harness import EvalConfig, run_eval
from r1lab.models import load_model, load_tokenizer
from r1lab.pipeline.config import DistillConfig, R1Config
from r1lab.pipeline.distill import run_distill
from r1lab.pipeline.paper_figures import write_results
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


@dataclass
class PaperMiniConfig:
    zero: str = "zero_smollm2"  # part a, the RL model of b, and the R1-Zero side of d
    r1: str = "r1_smollm2"  # part d's R1 side
    distill: str = "distill_smollm2"  # part c (its teacher may be a model part d trains)
    voting: VotingConfig = field(default_factory=VotingConfig)
    distill_seeds: list[int] = field(default_factory=list)  # part c again with these seeds (sampling, SFT order, GRPO)
    output_dir: str = "runs/paper_mini"
    results: str = "docs/results/paper_mini.md"  # figures are written beside it


def run_paper_mini(cfg: PaperMiniConfig, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    zero_cfg = load_config(ZeroConfig, cfg.zero)
    r1_cfg = load_config(R1Config, cfg.r1)
    distill_cfg = load_config(DistillConfig, cfg.distill)
    root = Path(cfg.output_dir)
    stages = Stages(root, log=log)
    atomic_write_text(root / "config.yaml", to_yaml(cfg))

    def zero(_: Path) -> dict:
        run = train_zero(zero_cfg, resume=True, progress=progress)
        records = run.read_metrics()
        return {"run": str(run.root), "model": final_checkpoint(run.root),
                "train_seconds": sum(r.get("time/step", 0.0) for r in records)}

    a = stages.run("a_zero", zero)

    def r1_vs_zero(_: Path) -> dict:
        summary = run_r1(r1_cfg, progress=progress, log=log)
        held_out = load_task(r1_cfg.task).test  # the same questions and budget the R1 stages were scored on
        return {"r1": summary, "zero_eval": evaluate_model(a["model"], held_out, r1_cfg.prompt, r1_cfg.eval,
                                                           r1_cfg.engine)}

    d = stages.run("d_r1_vs_zero", r1_vs_zero)
    c = stages.run("c_distill", lambda _: {"summary": run_distill(distill_cfg, progress=progress, log=log)})
    more = stages.run("c_distill_seeds", lambda _: {"by_seed": {str(seed): run_distill(
        _reseeded(distill_cfg, seed), progress=progress, log=log) for seed in cfg.distill_seeds}})
    c["seeds"] = more["by_seed"]

    def voting(stage_dir: Path) -> dict:
        out = {}
        for label, model in (("before RL", zero_cfg.model.name), ("after RL", a["model"])):
            out[label] = _vote(model, zero_cfg, cfg.voting, stage_dir / label.replace(" ", "_"))
        return out

    b = stages.run("b_voting", voting)
    machine = f"{platform.machine()}, {_cpu_count()} CPU cores, {platform.system()} (torch CPU, fp32)"
    results = Path(cfg.results)
    write_results(results, machine=machine, model=zero_cfg.model.name, zero_metrics=read_jsonl_records(Path(a["run"]) / "metrics.jsonl"),
                  a=a, b=b, c=c["summary"], c_seeds=c["seeds"], d=d, voting=cfg.voting,
                  c_seconds=c["summary"]["total_seconds"])
    atomic_write_text(root / "results.json", json.dumps({"a": a, "b": b, "c": c, "d": d}, indent=2) + "\n")
    return results


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
                          batch_size=voting.batch_size, output_dir=str(output_dir))
    tokenizer = load_tokenizer(model)
    engine = make_engine(zero_cfg.engine, load_model(model).eval(), tokenizer)
    summary = run_eval(eval_cfg, engine, tokenizer)
    # Samples of one question are correlated: the interval comes from the spread across questions.
    half = 1.96 * summary["pass@1_stderr"]
    summary["pass@1_ci95"] = [max(0.0, summary["pass@1"] - half), min(1.0, summary["pass@1"] + half)]
    return summary


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
