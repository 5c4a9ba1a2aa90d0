"""Rich tables for a summary and for a comparison; presentation only, numbers come from summary.py."""
from __future__ import annotations

from rich.table import Table

from r1lab.eval.compare import comparison_rows


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def summary_table(summary: dict) -> Table:
    k = summary["k"]
    title = (f"{summary.get('model', '?')} on {summary['benchmark']} ({summary.get('prompt_style', '?')} prompt, "
             f"T={summary.get('temperature', '?')}, top-p={summary.get('top_p', '?')})")
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    complete = "" if summary.get("complete", True) else " (incomplete)"
    table.add_row("questions × samples", f"{summary['questions']}/{summary.get('questions_total', '?')} × {k}{complete}")
    table.add_row("pass@1 (mean ± se)", f"{_pct(summary['pass@1'])} ± {100 * summary['pass@1_stderr']:.1f}")
    ci = summary.get("cons@k_ci95")
    cons = _pct(summary.get("cons@k")) + (f"  [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "")
    table.add_row(f"cons@{k} (95% Wilson)", cons)
    for kk, value in summary["pass@k"].items():
        table.add_row(f"pass@{kk}", _pct(value))
    table.add_row("answer extracted", _pct(summary.get("answer_rate")))
    table.add_row("mean completion tokens", f"{summary['mean_completion_tokens']:.1f}")
    table.add_row("truncation rate", _pct(summary["truncation_rate"]))
    if summary.get("scoring_errors"):
        table.add_row("scoring errors", str(summary["scoring_errors"]))
    table.add_row("wall time (sampling + scoring)", f"{summary['wall_time_s']:.1f} s")
    if summary.get("tokens_per_s"):
        table.add_row("completion tokens / s", f"{summary['tokens_per_s']:.1f}")
    return table


def comparison_table(summaries: list[dict]) -> Table:
    rows = comparison_rows(summaries)
    table = Table(title="evaluations")
    for column in rows[0]:
        table.add_column(column, justify="left" if column in ("run", "model", "benchmark", "style") else "right")
    for row in rows:
        table.add_row(*row.values())
    return table
