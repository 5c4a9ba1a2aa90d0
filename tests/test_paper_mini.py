"""`r1lab paper-mini` end to end on tiny models (recipes/paper_mini_tiny.yaml): every part is produced, and a
rerun reuses the finished runs instead of training again."""
from __future__ import annotations

import json

import pytest
import yaml

from r1lab.config import load_config
from r1lab.pipeline.paper_mini import PaperMiniConfig, run_paper_mini



def test_paper_mini_on_tiny_models_writes_every_part_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # the recipes' relative runs/ paths land here; data/ and recipes/ come from the package
    cfg = load_config(PaperMiniConfig, "recipes/paper_mini_tiny.yaml")
    results = run_paper_mini(cfg, progress=False, log=lambda _: None)

    text = results.read_text()
    for part in ("## Step 0: where thinking pays", "| chain_sum | 2:1 |", "## a.", "## b.", "## c.", "## d.",
                 "R1-Zero (pure RL)", "4_rl (same student", "cons@4", "after RL, seed 1", "Pooled over the 2 seeds"):
        assert part in text
    assert text.count("Mean difference over 2 seeds") == 2  # c and d, each with 2 seeds
    for figure in "abcd":
        assert (results.parent / f"paper_mini_{figure}.png").stat().st_size > 5_000
    recorded = json.loads((tmp_path / "runs/paper_mini_tiny/results.json").read_text())
    assert set(recorded["b"]) >= {"before RL", "after RL, seed 0", "after RL, seed 1"}
    assert recorded["b"]["after RL, seed 1"]["questions"] == 8 and recorded["b"]["after RL, seed 1"]["k"] == 4
    assert [z["seed"] for z in recorded["a"]] == [0, 1] and len(recorded["d"]) == len(recorded["d_zero"]) == 2
    step0 = recorded["0"]["levels"][0]["counts"]
    assert step0["think"][1] == step0["answer now"][1] == 4  # 2 prompts x 2 samples, every condition
    zero_seed1 = yaml.safe_load((tmp_path / "runs/zero_tiny_seed1/config.yaml").read_text())
    assert zero_seed1["grpo"]["seed"] == 1
    r1_seed1 = yaml.safe_load((tmp_path / "runs/r1_tiny_seed1/config.yaml").read_text())
    assert r1_seed1["sft"]["seed"] == r1_seed1["final_rl"]["grpo"]["seed"] == r1_seed1["rejection"]["seed"] == 1
    # The teacher of part c is part d's cold-start model, which learned the task; the table says so.
    teacher = next(s for s in recorded["c"]["summary"]["stages"] if s["stage"] == "1_teacher")
    assert teacher["eval"]["accuracy"] > 0.5
    reseeded = yaml.safe_load((tmp_path / "runs/distill_tiny_seed1/config.yaml").read_text())
    assert reseeded["traces"]["seed"] == reseeded["sft"]["seed"] == reseeded["compare_rl"]["grpo"]["seed"] == 1

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("stage.json")}
    run_paper_mini(cfg, progress=False, log=lambda _: None)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("stage.json")} == stamps


def test_a_subset_of_parts_runs_and_reports_only_those(tmp_path, monkeypatch):
    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    cfg = load_config(PaperMiniConfig, "recipes/paper_mini_tiny.yaml", ["parts=[a]", "zero_seeds=[]"])
    text = run_paper_mini(cfg, progress=False, log=lambda _: None).read_text()
    assert "## a." in text and "Not run for this report: part(s) 0, b, c, d" in text
    assert "## b." not in text and "## Step 0" not in text
    assert not (tmp_path / "runs/r1_tiny").exists() and not (tmp_path / "runs/paper_mini_tiny/b_voting").exists()


def test_parts_are_checked_before_anything_runs():
    with pytest.raises(ValueError, match="unknown part"):
        PaperMiniConfig(parts=["a", "e"])
    with pytest.raises(ValueError, match="compare with part a"):
        PaperMiniConfig(parts=["0", "b"])


def test_reply_parts_split_a_reply_into_think_and_what_follows_the_answer():
    from r1lab.pipeline.paper_report import reply_parts

    assert reply_parts("<think> 3 + 5 = 8. </think> <answer> 8</answer>") == (12, 0)
    assert reply_parts("<think>ab</think><answer>1</answer>\n\nThus, 2 + 7") == (2, 13)
    assert reply_parts("no tags at all") == (0, 0)


def test_a_length_trend_counts_only_where_its_interval_excludes_zero():
    from r1lab.pipeline.paper_report import TREND_STEPS, _trend_intervals

    rising = [{"completion/length_mean": 30.0 + step + (step % 2)} for step in range(3 * TREND_STEPS)]
    first, last, change = _trend_intervals(rising, "completion/length_mean")
    assert first[1] < first[0] < first[2] and change[0] == last[0] - first[0] == 2 * TREND_STEPS and change[1] > 0
    noisy = [{"completion/length_mean": 30.0 + (10.0 if step % 2 else -10.0)} for step in range(3 * TREND_STEPS)]
    assert _trend_intervals(noisy, "completion/length_mean")[2][1] < 0 < _trend_intervals(noisy, "completion/length_mean")[2][2]
    assert _trend_intervals([{"loss": 1.0}], "completion/length_mean") is None
