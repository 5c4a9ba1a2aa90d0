"""Distillation (R1_SYSTEM.md §4): a teacher's verified traces fine-tune a student with SFT only.

Stages (each resumable, each evaluated on the same held-out questions):
  0_student   the student before
  1_teacher   the teacher (local teachers only)
  2_traces    teacher samples on training prompts -> rejection sampling -> the SFT set
  3_sft       SFT of the student on that set
  4_rl        optional baseline: the same student trained with GRPO for the wall time stages 2 + 3 took
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

from r1lab import dist
from r1lab.pipeline.config import DistillConfig
from r1lab.pipeline.steps import open_staged_run, run_rl, run_sft, sample_and_filter
from r1lab.pipeline.summary import write_summary


def run_distill(cfg: DistillConfig, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    if not cfg.teacher.model:
        raise ValueError("teacher.model: name a local teacher (alias or checkpoint dir), or an endpoint's model "
                         "together with teacher.base_url")
    stages, evaluate = open_staged_run(cfg, log)
    root = stages.root

    records = [stages.run("0_student", lambda d: {"model": cfg.student, "eval": evaluate(cfg.student)})]
    if not cfg.teacher.base_url:
        records.append(stages.run("1_teacher", lambda d: {"model": cfg.teacher.model,
                                                           "eval": evaluate(cfg.teacher.model)}))

    def traces(stage_dir: Path) -> dict:
        data, stats = sample_and_filter(stage_dir, cfg.teacher, cfg.task, cfg.prompt, cfg.traces, cfg.engine, progress)
        return {"data": str(data), "rejection": stats}

    sft_set = stages.run("2_traces", traces)

    def sft(stage_dir: Path) -> dict:
        started = time.perf_counter()
        model = run_sft(stage_dir, cfg.student, sft_set["data"], cfg.sft, cfg.prompt, cfg.threads, progress)
        return {"model": model, "train_seconds": time.perf_counter() - started, "eval": evaluate(model)}

    distilled = stages.run("3_sft", sft)
    # rank 0's clock: each rank timed the stages itself, and ranks with different budgets would stop GRPO on
    # different steps (a hang in the next collective)
    distill_seconds = dist.broadcast_object(sft_set["seconds"] + distilled["train_seconds"])
    records.append({**distilled, "stage": "3_sft (distilled student)", "cost_seconds": distill_seconds})

    if cfg.compare_with_rl:
        budget = dataclasses.replace(cfg.compare_rl, time_budget_s=distill_seconds)

        def rl(stage_dir: Path) -> dict:
            started = time.perf_counter()
            model = run_rl(stage_dir, cfg.student, budget, cfg.task, cfg.prompt, cfg.engine, cfg.threads, progress)
            return {"model": model, "train_seconds": time.perf_counter() - started, "time_budget_s": distill_seconds,
                    "eval": evaluate(model)}

        records.append({**stages.run("4_rl", rl), "stage": "4_rl (same student, GRPO, same wall time)"})
    if not stages.is_writer:
        return {}
    return write_summary(root, f"Distillation: {cfg.teacher.model} -> {cfg.student}", records,
                         extra={"rejection": sft_set["rejection"], "distill_seconds": distill_seconds})
