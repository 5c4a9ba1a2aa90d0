"""The DeepSeek-R1 recipe (R1_SYSTEM.md §3) as five resumable stages, each evaluated on the same held-out set:

  1 cold_start     long-CoT SFT set (a file, or a teacher's filtered traces; by default the teacher is an
                   R1-Zero run on the base model, as the paper gathered R1-Zero outputs) -> SFT of the base
  2 reasoning_rl   GRPO from stage 1 with accuracy + format + language-consistency rewards
  3 rejection      many samples per prompt from stage 2, only verified-correct, readable ones kept
                   (+ non-reasoning samples if listed)
  4 sft            SFT of the *starting* model on that set
  5 final_rl       GRPO from stage 4
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from r1lab.pipeline.config import R1Config, TeacherConfig
from r1lab.pipeline.steps import open_staged_run, append_files, copy_into, run_rl, run_sft, sample_and_filter
from r1lab.pipeline.summary import write_summary


def run_r1(cfg: R1Config, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) every stage; returns the summary written to output_dir/summary.{md,json}."""
    stages, evaluate = open_staged_run(cfg, log)
    root = stages.root

    def rl(stage_dir: Path, start: str, stage_cfg) -> dict:
        model = run_rl(stage_dir, start, stage_cfg, cfg.task, cfg.prompt, cfg.engine, cfg.threads, progress)
        return {"model": model, "eval": evaluate(model)}

    rows = [stages.run("0_base", lambda d: {"model": cfg.model, "eval": evaluate(cfg.model)})]

    def cold_start(stage_dir: Path) -> dict:
        cs = cfg.cold_start
        record: dict = {}
        if cs.data:
            data = copy_into(stage_dir, cs.data)
        else:
            teacher = cs.teacher
            if not teacher.model and not teacher.base_url:  # the paper's source: R1-Zero outputs
                zero = stages.run("1_cold_start/teacher_rl", lambda d: rl(d, cfg.model, cs.teacher_rl))
                record["teacher"] = zero
                teacher = TeacherConfig(model=zero["model"])
            data, record["rejection"] = sample_and_filter(stage_dir, teacher, cfg.task, cfg.prompt, cs.traces,
                                                          cfg.engine, progress)
        model = run_sft(stage_dir, cfg.model, str(data), cs.sft, cfg.prompt, cfg.threads, progress)
        return {**record, "data": str(data), "model": model, "eval": evaluate(model)}

    rows.append(stages.run("1_cold_start", cold_start))
    rows.append(stages.run("2_reasoning_rl", lambda d: rl(d, rows[-1]["model"], cfg.reasoning_rl)))
    rl_model = rows[-1]["model"]

    def rejection(stage_dir: Path) -> dict:
        data, stats = sample_and_filter(stage_dir, TeacherConfig(model=rl_model), cfg.task, cfg.prompt,
                                        cfg.rejection, cfg.engine, progress)
        extra = append_files(data, cfg.rejection.extra_data) if stages.is_writer else 0
        return {"data": str(data), "rejection": stats, "extra_samples": extra}

    sft_set = stages.run("3_rejection", rejection)
    rows.append(sft_set)
    rows.append(stages.run("4_sft", lambda d: _sft_stage(d, cfg, sft_set["data"], evaluate, progress)))
    rows.append(stages.run("5_final_rl", lambda d: rl(d, rows[-1]["model"], cfg.final_rl)))
    return write_summary(root, "R1 pipeline", rows, extra={"rejection": sft_set["rejection"]}) \
        if stages.is_writer else {}


def _sft_stage(stage_dir: Path, cfg: R1Config, data: str, evaluate, progress: bool) -> dict:
    model = run_sft(stage_dir, cfg.model, data, cfg.sft, cfg.prompt, cfg.threads, progress)
    return {"model": model, "eval": evaluate(model)}
