"""One table per staged run: what every stage bought, on the same held-out questions (markdown + JSON)."""
from __future__ import annotations

import json
from pathlib import Path

from r1lab.runs.rundir import atomic_write_text

COLUMNS = ("stage", "held-out accuracy (95% CI)", "lenient", "format", "language", "length", "stage time")


def _row(record: dict) -> list[str]:
    ev = record.get("eval") or {}
    if not ev:
        return [record["stage"], "not evaluated", "", "", "", "", f"{record['seconds'] / 60:.1f} min"]
    low, high = ev["accuracy_ci95"]
    return [record["stage"], f"{ev['accuracy']:.3f} [{low:.3f}, {high:.3f}] (n={ev['n']})",
            f"{ev['accuracy_lenient']:.3f}", f"{ev['format']:.3f}", f"{ev['language']:.3f}",
            f"{ev['length_mean']:.1f}", f"{record['seconds'] / 60:.1f} min"]


def summary_markdown(title: str, records: list[dict]) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_row(r)) + " |" for r in records]
    total = sum(r["seconds"] for r in records)
    lines += ["", f"Total stage time: {total / 60:.1f} min. Accuracy: the answer inside <answer> tags is right "
              "(strict); lenient: else the last number; format: the strict <think>/<answer> format; language: "
              "share of target-language words in the think section; length: mean completion tokens.", ""]
    return "\n".join(lines)


def write_summary(root: Path, title: str, records: list[dict], extra: dict | None = None) -> dict:
    summary = {"title": title, "stages": records, **(extra or {}),
               "total_seconds": sum(r["seconds"] for r in records)}
    atomic_write_text(root / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(root / "summary.md", summary_markdown(title, records))
    return summary
