"""`r1lab paper-mini` end to end on tiny models (recipes/paper_mini_tiny.yaml): every part is produced, and a
rerun reuses the finished runs instead of training again."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from r1lab.config import load_config
from r1lab.pipeline.paper_mini import PaperMiniConfig, run_paper_mini



def test_paper_mini_on_tiny_models_writes_every_part_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # the recipes' relative runs/ paths land here; data/ and recipes/ come from the package
    cfg = load_config(PaperMiniConfig, "recipes/paper_mini_tiny.yaml")
    results = run_paper_mini(cfg, progress=False, log=lambda _: None)

    text = results.read_text()
    for part in ("## a.", "## b.", "## c.", "## d.", "R1-Zero (pure RL)", "4_rl (same student", "cons@4",
                 "Mean difference over 2 seeds"):
        assert part in text
    for figure in "abcd":
        assert (results.parent / f"paper_mini_{figure}.png").stat().st_size > 5_000
    recorded = json.loads((tmp_path / "runs/paper_mini_tiny/results.json").read_text())
    assert set(recorded["b"]) >= {"before RL", "after RL"}
    assert recorded["b"]["after RL"]["questions"] == 8 and recorded["b"]["after RL"]["k"] == 4
    # The teacher of part c is part d's cold-start model, which learned the task; the table says so.
    teacher = next(s for s in recorded["c"]["summary"]["stages"] if s["stage"] == "1_teacher")
    assert teacher["eval"]["accuracy"] > 0.5
    reseeded = yaml.safe_load((tmp_path / "runs/distill_tiny_seed1/config.yaml").read_text())
    assert reseeded["traces"]["seed"] == reseeded["sft"]["seed"] == reseeded["compare_rl"]["grpo"]["seed"] == 1

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("stage.json")}
    run_paper_mini(cfg, progress=False, log=lambda _: None)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("stage.json")} == stamps
