"""`r1lab report RUN_DIR [RUN_DIR …]`: flags -> r1lab.report.write_report; registered by cli.py with
`app.command()(report)`. No report logic lives here."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console


def report(
    run_dirs: List[Path] = typer.Argument(..., help="Run directories (metrics.jsonl, samples.jsonl, config.yaml, "
                                                    "aha.jsonl); several are overlaid on the same axes."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="HTML file; default RUN_DIR/report.html for one run, ./report.html "
                                               "for several."),
):
    """One self-contained HTML page (no network): config, every logged curve, a sample browser, the aha lens."""
    from r1lab.report import write_report

    console = Console(stderr=True, soft_wrap=True)
    try:
        path = write_report(run_dirs, output)
    except (FileNotFoundError, ValueError) as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(code=2)
    console.print(f"report written to [bold]{path}[/]", highlight=False)
