"""Charts as small hand-written inline SVG: no image files, no fonts or scripts to fetch, and fast enough
to draw every metric of a long run (matplotlib took ~0.3 s a chart on 2 shared cores; this takes ~1 ms).
Every point carries a <title>, so hovering shows its step and value."""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
TIME_PARTS = (("time/generate", "generate", "#1f77b4"), ("time/score", "score", "#ff7f0e"),
              ("time/train", "train", "#2ca02c"))
WIDTH, HEIGHT = 360, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 10, 24, 30
MAX_HOVER_POINTS = 300  # per line; longer series skip the per-point hover targets


@dataclass
class Line:
    """One run's series on a chart; `band` is a (low, high) interval per point, drawn shaded."""
    label: str
    color: str
    xs: list[float]
    ys: list[float]
    band: tuple[list[float], list[float]] | None = None


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^k apart) covering [low, high]."""
    if not high > low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = [round(first, 12)]
    while ticks[-1] < high - step * 1e-9 or len(ticks) < 2:
        ticks.append(round(first + len(ticks) * step, 12))
    return ticks


def format_number(value: float, step: float | None = None) -> str:
    """A tick or hover label: 0.25, 1200, 3e-06; `step` (tick spacing) sets the decimals."""
    if value == 0:
        return "0"
    scale = abs(step) if step else abs(value)
    if abs(value) >= 1e5 or scale < 1e-3:
        return f"{value:.1e}".replace("e-0", "e-").replace("e+0", "e")
    if step is None:
        return f"{value:.4g}"
    k = math.floor(math.log10(scale) + 1e-9)
    decimals = max(0, -k + (1 if abs(scale / 10 ** k - 2.5) < 1e-6 else 0))  # 0.25 needs 2 decimals, 0.2 one
    return f"{value:.{decimals}f}"


def _moving_average(ys: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, y in enumerate(ys):
        total += y
        if i >= window:
            total -= ys[i - window]
        out.append(total / min(i + 1, window))
    return out


def _path(points: list[tuple[float, float]]) -> str:
    return "M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in points)


def metric_chart(title: str, lines: list[Line]) -> str:
    """One metric over steps, one colour per run; long noisy series get a moving average over the faint raw line."""
    lines = [line for line in lines if line.xs]
    xs = [x for line in lines for x in line.xs] or [0.0]
    ys = [y for line in lines for y in line.ys]
    ys += [v for line in lines if line.band for v in line.band[0] + line.band[1]]
    ys = ys or [0.0]
    xticks, yticks = nice_ticks(min(xs), max(xs), 5), nice_ticks(min(ys), max(ys), 4)
    x0, x1, y0, y1 = xticks[0], xticks[-1], yticks[0], yticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return TOP + plot_h - (y - y0) / (y1 - y0) * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-label="{escape(title)}" font-family="system-ui, sans-serif" font-size="9">',
           f'<text x="{WIDTH / 2}" y="14" text-anchor="middle" font-size="11" font-weight="600">{escape(title)}</text>']
    xstep, ystep = xticks[1] - xticks[0], yticks[1] - yticks[0]
    for t in yticks:
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#e3e6ea"/>'
                   f'<text x="{LEFT - 4}" y="{sy(t) + 3:.1f}" text-anchor="end" fill="#555">'
                   f'{format_number(t, ystep)}</text>')
    for t in xticks:
        out.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#f0f2f4"/>'
                   f'<text x="{sx(t):.1f}" y="{TOP + plot_h + 12}" text-anchor="middle" fill="#555">'
                   f'{format_number(t, xstep)}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 3}" text-anchor="middle" fill="#777">step</text>'
               f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#c5cad1"/>')
    for line in lines:
        points = [(sx(x), sy(y)) for x, y in zip(line.xs, line.ys)]
        if line.band:
            upper = [(sx(x), sy(h)) for x, h in zip(line.xs, line.band[1])]
            lower = [(sx(x), sy(lo)) for x, lo in zip(line.xs, line.band[0])]
            out.append(f'<path class="band" d="{_path(upper + lower[::-1])}Z" fill="{line.color}" '
                       'fill-opacity="0.15"/>')
        if len(points) >= 20:
            smooth = _moving_average(line.ys, max(3, len(line.ys) // 10))
            trend = _path([(sx(x), sy(y)) for x, y in zip(line.xs, smooth)])
            out.append(f'<path d="{_path(points)}" fill="none" stroke="{line.color}" stroke-opacity="0.3" '
                       f'stroke-width="0.8"/><path class="line" d="{trend}" fill="none" stroke="{line.color}" '
                       'stroke-width="1.6"/>')
        else:
            out.append(f'<path class="line" d="{_path(points)}" fill="none" stroke="{line.color}" stroke-width="1.4"/>')
            out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{line.color}"/>' for x, y in points]
        if len(points) <= MAX_HOVER_POINTS:
            out += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5" fill="transparent"><title>{escape(line.label)}: step '
                    f'{format_number(x)} = {format_number(y)}</title></circle>'
                    for (px, py), x, y in zip(points, line.xs, line.ys)]
    if len(lines) > 1:
        for i, line in enumerate(lines[:6]):
            y = TOP + 10 + 11 * i
            out.append(f'<rect x="{LEFT + 6}" y="{y - 6}" width="10" height="3" fill="{line.color}"/>'
                       f'<text x="{LEFT + 20}" y="{y}" fill="#333" stroke="#fff" stroke-width="3" paint-order="stroke">'
                       f'{escape(line.label[:40])}</text>')
    out.append("</svg>")
    return "".join(out)


def time_split_chart(runs: list[tuple[str, dict[str, float]]]) -> str:
    """Share of step time spent generating, scoring and training (summed over the run), one bar per run."""
    bar, label_w = 18, 190
    height = TOP + 14 + len(runs) * (bar + 8)
    width = 2 * WIDTH
    plot_w = width - label_w - RIGHT
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="time split" font-family="system-ui, sans-serif" font-size="9">',
           f'<text x="{width / 2}" y="14" text-anchor="middle" font-size="11" font-weight="600">'
           f'time split: share of step time (sum over the run)</text>']
    for row, (name, seconds) in enumerate(runs):
        y = TOP + row * (bar + 8)
        total = sum(seconds.get(key, 0.0) for key, _, _ in TIME_PARTS)
        out.append(f'<text x="{label_w - 6}" y="{y + bar / 2 + 3}" text-anchor="end">{escape(name[:32])} '
                   f'({_duration(total)})</text>')
        left = 0.0
        for key, label, color in TIME_PARTS:
            share = seconds.get(key, 0.0) / total if total else 0.0
            x = label_w + left * plot_w
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{share * plot_w:.1f}" height="{bar}" fill="{color}">'
                       f'<title>{label}: {100 * share:.1f}% ({seconds.get(key, 0.0):.1f} s)</title></rect>')
            if share > 0.08:
                out.append(f'<text x="{x + share * plot_w / 2:.1f}" y="{y + bar / 2 + 3}" text-anchor="middle" '
                           f'fill="#fff">{label} {100 * share:.0f}%</text>')
            left += share
    out.append("</svg>")
    return "".join(out)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
