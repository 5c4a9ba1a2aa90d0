"""The four PNG figures of docs/results/paper_mini.md, from the records `r1lab paper-mini` collects."""
from __future__ import annotations

from pathlib import Path

from r1lab.eval.metrics import mean_interval, wilson_interval


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(ax, labels: list[str], values: list[float], intervals: list[tuple[float, float]] | None, title: str):
    xs = range(len(labels))
    errors = None
    if intervals:
        errors = [[v - lo for v, (lo, _) in zip(values, intervals)], [hi - v for v, (_, hi) in zip(values, intervals)]]
    ax.bar(xs, values, yerr=errors, capsize=4, color="#4C72B0")
    ax.set_xticks(list(xs), labels, fontsize=8, rotation=15)
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)


ROLLING_STEPS = 5  # figure a's training-length curve: the mean of the last this many step means


def _rolling_intervals(values: list[float], window: int) -> list[tuple[float, float, float]]:
    """At each step, the mean of the last `window` step values with its 95% t interval; the first steps, with
    fewer values, get the mean of those and no interval (NaN: a gap in the band)."""
    nan = float("nan")
    out = []
    for i in range(len(values)):
        mean, low, high = mean_interval(values[max(0, i - window + 1) : i + 1])
        out.append((mean, low, high) if i + 1 >= window else (mean, nan, nan))
    return out


def figure_a(metrics_by_seed: dict[int, list[dict]], path: Path) -> None:
    """Per seed, across R1-Zero's GRPO steps: held-out accuracy (with Wilson bands), response length and the
    share of training samples with a reflective phrase."""
    plt = _plt()
    fig, (acc_ax, len_ax, aha_ax) = plt.subplots(1, 3, figsize=(14, 3.6))
    for index, (seed, metrics) in enumerate(metrics_by_seed.items()):
        colour = f"C{index}"
        evals = [m for m in metrics if "eval/accuracy" in m]
        train = [m for m in metrics if "completion/length_mean" in m]
        steps, train_steps = [m["step"] for m in evals], [m["step"] for m in train]
        bands = [wilson_interval(round(m["eval/accuracy"] * m["eval/n"]), int(m["eval/n"])) for m in evals]
        acc_ax.fill_between(steps, [b[0] for b in bands], [b[1] for b in bands], color=colour, alpha=0.15)
        acc_ax.plot(steps, [m["eval/accuracy"] for m in evals], marker="o", color=colour,
                    label=f"seed {seed}: held-out (greedy, 95% band)")
        acc_ax.plot(train_steps, [m.get("train/accuracy", float("nan")) for m in train], color=colour, alpha=0.35,
                    label=f"seed {seed}: train samples")
        rolling = _rolling_intervals([m["completion/length_mean"] for m in train], ROLLING_STEPS)
        len_ax.fill_between(train_steps, [r[1] for r in rolling], [r[2] for r in rolling], color=colour, alpha=0.15)
        len_ax.plot(train_steps, [r[0] for r in rolling], color=colour, alpha=0.6,
                    label=f"seed {seed}: train samples, {ROLLING_STEPS}-step rolling mean (95% band)")
        len_ax.plot(steps, [m.get("eval/length_mean", float("nan")) for m in evals], marker="o", color=colour,
                    label=f"seed {seed}: held-out (greedy)")
        aha_ax.plot(train_steps, [m.get("aha/reflection_rate", float("nan")) for m in train], color=colour,
                    label=f"seed {seed}")
    acc_ax.set(xlabel="GRPO step", ylabel="accuracy", ylim=(0, 1), title="R1-Zero: accuracy")
    len_ax.set(xlabel="GRPO step", ylabel="tokens", title="R1-Zero: response length")
    aha_ax.set(xlabel="GRPO step", ylabel="share of samples", ylim=(0, 1),
               title="R1-Zero: samples with a reflective phrase")
    for ax in (acc_ax, len_ax, aha_ax):
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure_b(b: dict, k: int, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    labels, values, intervals = [], [], []
    for when, s in b.items():
        if when == "stage" or when == "seconds":
            continue
        labels += [f"{when}\npass@1", f"{when}\ncons@{k}", f"{when}\npass@{k}"]
        values += [s["pass@1"], s["cons@k"], s["pass@k"][str(k)]]
        intervals += [tuple(s["pass@1_ci95"]), tuple(s["cons@k_ci95"]), (s["pass@k"][str(k)],) * 2]
    _bars(ax, labels, values, intervals, f"Majority voting on held-out questions (k = {k})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def stage_evals(records: list[dict]) -> list[tuple[str, dict]]:
    return [(r["stage"], r["eval"]) for r in records if r.get("eval")]


def figure_evals(pairs: list[tuple[str, dict]], keys: list[str], title: str, path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        values = [ev[key] for _, ev in pairs]
        intervals = [tuple(ev["accuracy_ci95"]) for _, ev in pairs] if key == "accuracy" else None
        _bars(ax, [name for name, _ in pairs], values, intervals, key)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
