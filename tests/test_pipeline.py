"""The staged recipes end to end on tiny models: recipes/r1_tiny.yaml (with an interruption between stages)
and distillation with its same-wall-time RL baseline."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM

from r1lab.config import load_config
from r1lab.pipeline import stages as stages_module
from r1lab.pipeline.config import DistillConfig, R1Config
from r1lab.pipeline.distill import run_distill
from r1lab.pipeline.r1 import run_r1
from r1lab.pipeline.stages import Stages
from r1lab.resources import DATA, RECIPES

R1_STAGES = ["0_base", "1_cold_start", "2_reasoning_rl", "3_rejection", "4_sft", "5_final_rl"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path / "cache"))


def test_a_finished_stage_is_skipped_and_an_interrupted_one_keeps_its_time(tmp_path):
    stages = Stages(tmp_path, log=lambda _: None)
    calls = []

    def body(stage_dir):
        calls.append(stage_dir)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return {"value": 3}

    with pytest.raises(KeyboardInterrupt):
        stages.run("a", body)
    assert stages.record("a") is None and (tmp_path / "a" / stages_module.ELAPSED).is_file()
    first = stages.run("a", body)
    again = stages.run("a", body)
    assert len(calls) == 2 and first == again and first["value"] == 3 and first["stage"] == "a"
    assert not (tmp_path / "a" / stages_module.ELAPSED).exists()


def _tiny_r1(tmp_path) -> R1Config:
    return load_config(R1Config, RECIPES / "r1_tiny.yaml", [
        f"output_dir={tmp_path / 'r1'}", f"task.path={DATA / 'tiny/sevens.jsonl'}",
        f"cold_start.data={DATA / 'tiny/sevens_cold_start.jsonl'}", "threads=1"])


def test_r1_tiny_runs_every_stage_and_resumes_after_an_interruption(tmp_path, cache, monkeypatch):
    cfg = _tiny_r1(tmp_path)
    real_run = Stages.run
    started = []

    def interrupt_before_rejection(self, name, body):
        started.append(name)
        if name == "3_rejection" and started.count(name) == 1:
            raise KeyboardInterrupt  # a kill between stages 2 and 3
        return real_run(self, name, body)

    monkeypatch.setattr(Stages, "run", interrupt_before_rejection)
    with pytest.raises(KeyboardInterrupt):
        run_r1(cfg, progress=False, log=lambda _: None)
    root = Path(cfg.output_dir)
    finished = {name: (root / name / "stage.json").stat().st_mtime_ns for name in R1_STAGES[:3]}
    assert not (root / "3_rejection" / "stage.json").exists()

    summary = run_r1(cfg, progress=False, log=lambda _: None)
    assert {name: (root / name / "stage.json").stat().st_mtime_ns for name in R1_STAGES[:3]} == finished
    assert [s["stage"] for s in summary["stages"]] == R1_STAGES
    assert summary["rejection"]["kept"] > 0
    table = (root / "summary.md").read_text()
    assert all(name in table for name in R1_STAGES) and "not evaluated" in table  # 3_rejection trains nothing
    assert json.loads((root / "summary.json").read_text())["stages"][-1]["stage"] == "5_final_rl"
    by_stage = {s["stage"]: s.get("eval") for s in summary["stages"]}
    # The cold start teaches the random model the reply format, which it never produces on its own.
    assert by_stage["0_base"]["format"] == 0.0 and by_stage["1_cold_start"]["format"] > 0.5
    for s in (s for s in summary["stages"][1:] if "model" in s):  # every stage's model is a plain transformers checkpoint
        assert AutoModelForCausalLM.from_pretrained(s["model"]) is not None
    # Stage 4 trains the *starting* model on stage 3's set, not the RL model.
    assert yaml.safe_load((root / "4_sft" / "run" / "config.yaml").read_text())["model"]["name"] == "tiny-llama"
    assert yaml.safe_load((root / "5_final_rl" / "run" / "config.yaml").read_text())["model"]["name"] == \
        by_model_of(summary, "4_sft")
    rerun = run_r1(cfg, progress=False, log=lambda _: None)
    assert rerun["stages"] == summary["stages"]


def by_model_of(summary: dict, stage: str) -> str:
    return next(s["model"] for s in summary["stages"] if s["stage"] == stage)


def test_distillation_with_a_same_wall_time_rl_baseline(tmp_path, cache, tiny_model_dir):
    cfg = load_config(DistillConfig, None, [
        f"teacher.model={tiny_model_dir}", f"student={tiny_model_dir}", f"output_dir={tmp_path / 'distill'}",
        "task.source=jsonl", f"task.path={DATA / 'tiny/sevens.jsonl'}", "task.test_size=8", "task.verifier=numeric",
        "prompt.example=false", "prompt.system=", "eval.size=8", "eval.max_new_tokens=24", "threads=1",
        "traces.limit=6", "traces.n=2", "traces.max_new_tokens=24",
        # a random teacher is never right: keep everything to exercise the plumbing
        "traces.rejection.require_correct=false", "traces.rejection.require_closed_think=false",
        "traces.rejection.min_language_share=0", "traces.rejection.max_repeated_ngram_share=1.0",
        "traces.rejection.drop_truncated=false", "traces.rejection.dedupe=false",
        "sft.steps=3", "sft.batch_size=4", "compare_with_rl=true",
        "compare_rl.grpo.steps=1000", "compare_rl.grpo.prompts_per_step=2", "compare_rl.grpo.group_size=2",
        "compare_rl.grpo.max_new_tokens=24"])
    summary = run_distill(cfg, progress=False, log=lambda _: None)
    names = [s["stage"] for s in summary["stages"]]
    assert names == ["0_student", "1_teacher", "3_sft (distilled student)", "4_rl (same student, GRPO, same wall time)"]
    rl = summary["stages"][-1]
    assert rl["time_budget_s"] == pytest.approx(summary["distill_seconds"])
    metrics = [json.loads(line) for line in (tmp_path / "distill" / "4_rl" / "run" / "metrics.jsonl").open()]
    steps = max(m["step"] for m in metrics)
    assert 1 <= steps < 1000  # stopped by the wall-time budget, not by the step count
    assert summary["rejection"]["kept"] == 12
