"""`r1lab report`: one self-contained HTML page per run or comparison (config, every logged curve, a sample
browser with think/answer highlighted, accuracies with n and 95% intervals, the aha lens).

Sits above eval/ and runs/ (it reads run directories, never writes into a run's logs) and below cli.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from r1lab.eval.aha import DEFAULT_LEXICON
from r1lab.report.html import render_report
from r1lab.report.load import RunData, load_run, load_runs
from r1lab.runs import atomic_write_text

__all__ = ["RunData", "load_run", "load_runs", "render_report", "write_report"]


def write_report(run_dirs: Sequence[str | Path] | str | Path, output: str | Path | None = None,
                 lexicon: Sequence[str] = DEFAULT_LEXICON) -> Path:
    """Write the report for one run (default: RUN_DIR/report.html) or several overlaid (default:
    ./report.html); returns its path. Raises FileNotFoundError for a path that is not a run directory."""
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise ValueError("report: give at least one run directory")
    runs = load_runs(list(run_dirs))
    if output is None:
        output = runs[0].root / "report.html" if len(runs) == 1 else Path("report.html")
    output = Path(output)
    atomic_write_text(output, render_report(runs, lexicon))
    return output
