"""The report page: one HTML string with its CSS, JS, charts (inline SVG) and data inlined; nothing is fetched."""
from __future__ import annotations

import json
from html import escape
from typing import Sequence

from r1lab.eval.aha import DEFAULT_LEXICON
from r1lab.report.assets import CSS, JS
from r1lab.report.load import (GROUP_TITLES, RunData, grouped_keys, is_count_companion, n_key,
                               reward_summaries, wilson)
from r1lab.report.plots import COLORS, TIME_PARTS, Line, metric_chart, time_split_chart
from r1lab.report.samples import aha_payload, browser_payload

MAX_EVAL_ROWS = 50  # per run and metric, the most recent


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def _table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _interval(value: float, n: float) -> list[str]:
    stats = wilson(value, n)
    if stats is None:
        return [_pct(value), "-", "-"]
    successes, trials, low, high = stats
    return [_pct(value), f"{successes}/{trials}", f"[{_pct(low)}, {_pct(high)}]"]


# ---------------------------------------------------------------------------- sections
def _overview(runs: list[RunData]) -> str:
    rows = []
    for i, run in enumerate(runs):
        _, rewards = run.series("reward/total")
        eval_steps, acc = run.series("eval/accuracy")
        counts = dict(zip(*run.series("eval/n")))
        eval_cell = "-"
        if acc:
            n = counts.get(eval_steps[-1])
            cells = _interval(acc[-1], n) if n else [_pct(acc[-1]), "-", "no n"]
            eval_cell = f"{cells[0]} <span class=muted>({cells[1]}) {cells[2]}</span>"
        _, seconds = run.series("time/step")
        last = run.last_step()
        rows.append([f'<span class="swatch" style="background:{COLORS[i % len(COLORS)]}"></span>{escape(run.name)}',
                     f"<code>{escape(str(run.root))}</code>", "-" if last is None else str(last),
                     _fmt(rewards[-1]) if rewards else "-", eval_cell, str(len(run.samples)),
                     _fmt(sum(seconds) / 60) + " min" if seconds else "-"])
    return _table(["run", "directory", "last step", "last reward/total", "last eval/accuracy (95% Wilson)",
                   "logged samples", "time"], rows)


def _rewards(runs: list[RunData]) -> str:
    """Each reward function's last-step mean and std, and its failed samples over the run."""
    rows = [[escape(run.name), f"<code>reward/{escape(name)}</code>", _fmt(mean), _fmt(std), str(int(failures))]
            for run in runs for name, mean, std, failures in reward_summaries(run)]
    if not rows:
        return ""
    return "<h3>Rewards per function (last step)</h3>" + _table(
        ["run", "reward", "mean", "std", "failed samples (all steps)"], rows, "num")


def _accuracy(runs: list[RunData]) -> str:
    """Every accuracy with its n and a 95% Wilson interval: per evaluation for eval/, pooled over steps otherwise."""
    per_eval, pooled, missing = [], [], set()
    for run in runs:
        keys = run.metric_keys()
        for key in keys:
            if "accuracy" not in key.rsplit("/", 1)[-1] or is_count_companion(key, keys):
                continue
            companion = n_key(key, keys)
            if companion is None:
                missing.add(key)
                continue
            steps, values = run.series(key)
            counts = dict(zip(*run.series(companion)))
            points = [(s, v, counts[s]) for s, v in zip(steps, values) if s in counts]
            if key.startswith("eval/"):
                for s, v, n in points[-MAX_EVAL_ROWS:]:
                    per_eval.append([escape(run.name), escape(key), str(int(s)), *_interval(v, n)])
            elif points:
                trials = sum(round(n) for _, _, n in points)
                successes = sum(round(v * n) for _, v, n in points)
                if trials:
                    pooled.append([escape(run.name), escape(key), f"{int(points[0][0])}–{int(points[-1][0])}",
                                   *_interval(successes / trials, trials)])
    parts = []
    if per_eval:
        parts.append("<h3>Held-out evaluations</h3>" + _table(
            ["run", "metric", "step", "accuracy", "correct / n", "95% Wilson interval"], per_eval, "num"))
    if pooled:
        parts.append("<h3>Pooled over training steps</h3>" + _table(
            ["run", "metric", "steps", "accuracy", "correct / n", "95% Wilson interval"], pooled, "num"))
    if missing:
        parts.append('<p class="muted">No n logged (so no interval) for: ' + ", ".join(
            f"<code>{escape(k)}</code>" for k in sorted(missing)) + ". Train-batch accuracies average G samples "
            "per prompt; those samples are correlated, so a binomial interval on them would be too narrow.</p>")
    if not parts:
        return '<p class="muted">No accuracy with a trial count (e.g. <code>eval/accuracy</code> with '\
               '<code>eval/n</code>) was logged.</p>'
    return "".join(parts)


def _band(run: RunData, key: str, keys: list[str], xs: list[float], ys: list[float]):
    companion = n_key(key, keys)
    if companion is None:
        return None
    counts = dict(zip(*run.series(companion)))
    if not all(x in counts for x in xs):
        return None
    lows, highs = [], []
    for x, y in zip(xs, ys):
        stats = wilson(y, counts[x])
        if stats is None:
            return None
        lows.append(stats[2])
        highs.append(stats[3])
    return lows, highs


def _curves(runs: list[RunData]) -> tuple[str, list[tuple[str, str]]]:
    all_keys = sorted({k for run in runs for k in run.metric_keys()})
    if not all_keys:
        return '<p class="muted">No metrics logged (metrics.jsonl is absent or empty).</p>', []
    html, nav = [], []
    for group, keys in grouped_keys(all_keys):
        figures = []
        if group == "time":
            totals = [(run.name, {k: sum(run.series(k)[1]) for k, _, _ in TIME_PARTS}) for run in runs]
            totals = [(name, t) for name, t in totals if any(t.values())]
            if totals:
                figures.append(f'<figure class="plot wide" data-metric="time/split">{time_split_chart(totals)}'
                               '</figure>')
        for key in keys:
            lines = []
            for i, run in enumerate(runs):
                xs, ys = run.series(key)
                if xs:
                    lines.append(Line(run.name, COLORS[i % len(COLORS)], xs, ys,
                                      _band(run, key, run.metric_keys(), xs, ys)))
            if lines:
                title = key + (" (band: 95% Wilson)" if any(line.band for line in lines) else "")
                figures.append(f'<figure class="plot" data-metric="{escape(key)}">{metric_chart(title, lines)}'
                               '</figure>')
        title = GROUP_TITLES.get(group, group)
        anchor = f"g-{group}"
        nav.append((anchor, title))
        html.append(f'<h3 id="{escape(anchor)}">{escape(title)}</h3><div class="grid">{"".join(figures)}</div>')
    return "".join(html), nav


def _aha_summary(runs: list[RunData]) -> str:
    rows = []
    for run in runs:
        _, rates = run.series("aha/reflection_rate")
        _, candidates = run.series("aha/candidates")
        if not rates and not candidates:
            continue
        rows.append([escape(run.name), _pct(sum(rates) / len(rates)) if rates else "-",
                     f"{_pct(rates[0])} → {_pct(rates[-1])}" if rates else "-",
                     str(int(sum(candidates))) if candidates else "-"])
    if not rows:
        return ('<p class="muted">No <code>aha/</code> metrics logged; the candidates below are found among the '
                'logged samples only.</p>')
    return _table(["run", "mean reflection rate", "first → last step", "aha candidates (all steps)"], rows, "num") + \
        '<p class="muted">Accuracy with and without reflection, with n and intervals: see the pooled table above.</p>'


def _config(runs: list[RunData]) -> str:
    if len(runs) == 1:
        text = runs[0].config_text
        return f"<pre class=config>{escape(text)}</pre>" if text else '<p class="muted">No config.yaml in this run.</p>'
    flat = [_flatten(run.config) for run in runs]
    keys = sorted({k for f in flat for k in f})
    differ = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]
    parts = []
    if differ:
        rows = [[f"<code>{escape(k)}</code>"] + [escape(json.dumps(f.get(k, "—"), default=str)) for f in flat]
                for k in differ]
        parts.append("<h3>What differs</h3>" + _table(["field"] + [run.name for run in runs], rows))
    else:
        parts.append('<p class="muted">The configs are identical (or absent).</p>')
    for run in runs:
        body = f"<pre class=config>{escape(run.config_text)}</pre>" if run.config_text else "<p>No config.yaml.</p>"
        parts.append(f"<details><summary>{escape(run.name)}: config.yaml</summary>{body}</details>")
    return "".join(parts)


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _json_script(element_id: str, data) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def render_report(runs: list[RunData], lexicon: Sequence[str] = DEFAULT_LEXICON) -> str:
    """The whole page for one run or several overlaid, as one string."""
    title = "r1lab report: " + (runs[0].name if len(runs) == 1 else " vs ".join(r.name for r in runs))
    curves, curve_nav = _curves(runs)
    data = {"runs": [browser_payload(run, lexicon) for run in runs],
            "aha": [{"name": run.name, "candidates": aha_payload(run, lexicon)} for run in runs],
            "lexicon": list(lexicon)}
    nav = [("overview", "Overview"), ("accuracy", "Accuracy ± 95%"), ("curves", "Curves"),
           *[(a, "· " + a[2:]) for a, _ in curve_nav], ("samples", "Samples"), ("aha", "Aha lens"),
           ("config", "Config")]
    nav_html = "".join(f'<a href="#{escape(a)}">{escape(t)}</a>' for a, t in nav)
    lexicon_html = ", ".join(f"<code>{escape(p)}</code>" for p in lexicon)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{CSS}</style></head>
<body>
<header><h1>{escape(title)}</h1><nav>{nav_html}</nav></header>
<main>
<section id="overview"><h2>Overview</h2>{_overview(runs)}{_rewards(runs)}</section>
<section id="accuracy"><h2>Accuracy, with n and 95% intervals</h2>{_accuracy(runs)}</section>
<section id="curves"><h2>Curves</h2>{curves}</section>
<section id="samples"><h2>Samples</h2>
<div class="controls">
  <label id="run-label">run <select id="run-select"></select></label>
  <button id="prev-step" title="previous step (←)">◀</button>
  <label>step <select id="step-select"></select></label>
  <button id="next-step" title="next step (→)">▶</button>
  <input id="step-range" type="range" min="0" max="0" value="0" aria-label="step">
  <label><input id="aha-only" type="checkbox"> aha candidates only</label>
  <span id="step-info" class="muted"></span>
</div>
<p class="legend"><span class="think">think</span> <span class="answer">answer</span>
<span class="tag">&lt;tag&gt;</span> <span class="reflect">reflective phrase</span>
<span class="stated">stated answer</span></p>
<div id="sample-list"></div>
</section>
<section id="aha"><h2>Aha lens</h2>
<p>The rate of reflective phrases in completions and <b>aha candidates</b>: completions that state an answer,
then reflect, then end on a different answer that is correct. Candidates are for reading, not a verdict.</p>
<details><summary>lexicon ({len(lexicon)} phrases)</summary><p>{lexicon_html}</p></details>
{_aha_summary(runs)}
<div id="aha-list"></div>
</section>
<section id="config"><h2>Config</h2>{_config(runs)}</section>
</main>
{_json_script("report-data", data)}
<script>{JS}</script>
</body></html>
"""
