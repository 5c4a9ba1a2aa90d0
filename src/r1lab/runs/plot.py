"""Training curves as one PNG, rewritten atomically so a viewer never sees half a file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# The panels a run shows first (GRPO, then SFT's loss); any other numeric metric gets a panel after them.
PREFERRED = ["reward/total", "loss", "eval/accuracy", "train/accuracy", "train/format", "eval/format",
             "completion/length_mean", "kl", "entropy", "clip_fraction", "grad_norm", "lr", "time/step"]


def plot_metrics(records: list[dict], path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for r in records for k, v in r.items() if isinstance(v, (int, float)) and k != "step"})
    ordered = [k for k in PREFERRED if k in keys] + [k for k in keys if k not in PREFERRED and not k.startswith("time/")]
    ordered = ordered[:16]
    if not ordered:
        return
    cols = 4
    rows = (len(ordered) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, key in zip(axes.flat, ordered):
        pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        xs, ys = zip(*pts) if pts else ((), ())
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3)
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(ordered):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
