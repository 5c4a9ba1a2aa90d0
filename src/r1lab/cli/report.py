"""`r1lab report RUN_DIR [RUN_DIR …]`: flags -> r1lab.report.write_report; registered in r1lab.cli.
No report logic lives here."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from r1lab.cli.errors import console, reported


def report(
    run_dirs: List[Path] = typer.Argument(..., help="Run directories (metrics.jsonl, samples.jsonl, config.yaml, "
                                                    "aha.jsonl); several are overlaid on the same axes."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="HTML file; default RUN_DIR/report.html for one run, ./report.html "
                                               "for several."),
):
    """One self-contained HTML page (no network): config, every logged curve, a sample browser, the aha lens."""
    from r1lab.report import write_report

    with reported():
        path = write_report(run_dirs, output)
    console.print(f"report written to [bold]{path}[/]")
