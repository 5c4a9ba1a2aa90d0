"""Read finished evaluations back and line them up: one row per run, the columns R1 reports."""
from __future__ import annotations

import json
from pathlib import Path

from r1lab.eval.records import SUMMARY_FILE, EvalError


def load_summary(path: str | Path) -> dict:
    """A run folder (holding summary.json) or a summary.json file itself."""
    path = Path(path)
    file = path / SUMMARY_FILE if path.is_dir() else path
    if not file.is_file():
        hint = " (the run has not finished: rerun its eval command to resume it)" if path.is_dir() else ""
        raise EvalError(f"{file}: no evaluation summary{hint}")
    try:
        summary = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise EvalError(f"{file}:{err.lineno}: not valid JSON ({err.msg})") from None
    missing = [key for key in ("pass@1", "pass@k", "k", "benchmark") if key not in summary]
    if missing:
        raise EvalError(f"{file}: not an r1lab eval summary (missing {missing})")
    summary.setdefault("run_dir", str(file.parent))
    return summary


def comparison_rows(summaries: list[dict]) -> list[dict[str, str]]:
    """Formatted cells, one dict per run; pass@k is shown at each run's own k."""
    rows = []
    for s in summaries:
        k = s["k"]
        cons = s.get("cons@k")
        rows.append({
            "run": Path(s.get("run_dir", "?")).name,
            "model": str(s.get("model", "?")),
            "benchmark": str(s["benchmark"]),
            "style": str(s.get("prompt_style", "?")),
            "questions": str(s.get("questions", "?")),
            "k": str(k),
            "pass@1": f"{100 * s['pass@1']:.1f} ± {100 * s.get('pass@1_stderr', 0.0):.1f}",
            "cons@k": "-" if cons is None else f"{100 * cons:.1f}",
            "pass@k": f"{100 * s['pass@k'][str(max(int(x) for x in s['pass@k']))]:.1f}",
            "tokens": f"{s.get('mean_completion_tokens', 0):.0f}",
            "truncated": f"{100 * s.get('truncation_rate', 0):.0f}%",
            "wall": f"{s.get('wall_time_s', 0):.0f}s",
        })
    return rows
