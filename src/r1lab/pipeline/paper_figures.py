"""docs/results/paper_mini.md and its four PNG figures, from the records `r1lab paper-mini` collects."""
from __future__ import annotations

import datetime
from pathlib import Path

from r1lab.eval.metrics import wilson_interval
from r1lab.pipeline.summary import summary_markdown
from r1lab.runs.rundir import atomic_write_text


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ci(ev: dict) -> str:
    low, high = ev["accuracy_ci95"]
    return f"{ev['accuracy']:.2f} [{low:.2f}, {high:.2f}]"


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


def figure_a(metrics: list[dict], path: Path) -> None:
    """Held-out accuracy (with Wilson bands) and response length across R1-Zero's GRPO steps."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    evals = [m for m in metrics if "eval/accuracy" in m]
    steps = [m["step"] for m in evals]
    acc = [m["eval/accuracy"] for m in evals]
    bands = [wilson_interval(round(m["eval/accuracy"] * m["eval/n"]), int(m["eval/n"])) for m in evals]
    left.fill_between(steps, [b[0] for b in bands], [b[1] for b in bands], alpha=0.2, label="95% Wilson interval")
    left.plot(steps, acc, marker="o", label="held-out accuracy (greedy)")
    train = [m for m in metrics if "train/accuracy" in m]
    left.plot([m["step"] for m in train], [m["train/accuracy"] for m in train], alpha=0.5, label="train batch accuracy")
    left.set(xlabel="GRPO step", ylabel="accuracy", ylim=(0, 1), title="R1-Zero: accuracy")
    left.legend(fontsize=7)
    right.plot([m["step"] for m in train], [m["completion/length_mean"] for m in train], label="train samples (mean)")
    right.plot(steps, [m.get("eval/length_mean", float("nan")) for m in evals], marker="o", label="held-out (greedy)")
    right.set(xlabel="GRPO step", ylabel="tokens", title="R1-Zero: response length")
    right.legend(fontsize=7)
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


def _stage_evals(records: list[dict]) -> list[tuple[str, dict]]:
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


def _eval_table(pairs: list[tuple[str, dict]], times: dict[str, float] | None = None) -> list[str]:
    head = "| model | held-out accuracy [95% CI] | n | format | language | length |" + (" time |" if times else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, ev in pairs:
        row = (f"| {name} | {_ci(ev)} | {ev['n']} | {ev['format']:.2f} | {ev['language']:.2f} | "
               f"{ev['length_mean']:.1f} |")
        if times:
            row += f" {times[name] / 60:.1f} min |" if name in times else " |"
        lines.append(row)
    return lines


def _compare(name_a: str, a: dict, name_b: str, b: dict) -> str:
    """One honest sentence: the difference, and whether the 95% intervals even separate."""
    gap = a["accuracy"] - b["accuracy"]
    separate = a["accuracy_ci95"][0] > b["accuracy_ci95"][1] or b["accuracy_ci95"][0] > a["accuracy_ci95"][1]
    verdict = "the intervals separate" if separate else "the intervals overlap, so this is not a finding"
    return f"Held-out accuracy, {name_a} − {name_b}: {gap:+.2f} ({verdict})."


def _seed_table(first: dict, more: dict[str, dict]) -> list[str]:
    """Distilled vs GRPO accuracy per seed, and the mean difference: the headline comparison's spread."""
    if not more:
        return ["Only one seed was run for this comparison (set `distill_seeds` for more).", ""]
    runs = {"0": first, **more}
    lines = ["| seed | distilled | GRPO, same wall time | difference | wall time |", "|---|---|---|---|---|"]
    gaps = []
    for seed, summary in runs.items():
        evals = {r["stage"][:4]: r["eval"] for r in summary["stages"] if r.get("eval")}
        gap = evals["3_sf"]["accuracy"] - evals["4_rl"]["accuracy"]
        gaps.append(gap)
        lines.append(f"| {seed} | {_ci(evals['3_sf'])} | {_ci(evals['4_rl'])} | {gap:+.2f} | "
                     f"{summary['distill_seconds'] / 60:.1f} min |")
    lines += ["", f"Mean difference over {len(gaps)} seeds: {sum(gaps) / len(gaps):+.3f} "
              f"(per seed: {', '.join(f'{g:+.2f}' for g in gaps)}).", ""]
    return lines


def write_results(path: Path, machine: str, model: str, zero_metrics: list[dict], a: dict, b: dict, c: dict, d: dict,
                  voting, c_seconds: float, c_seeds: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.with_suffix("")
    figure_a(zero_metrics, Path(f"{stem}_a.png"))
    figure_b(b, voting.k, Path(f"{stem}_b.png"))
    distill_pairs = _stage_evals(c["stages"])
    figure_evals(distill_pairs, ["accuracy", "format"], "Distillation vs RL, same student, same wall time",
                 Path(f"{stem}_c.png"))
    r1_pairs = [("R1-Zero (pure RL)", d["zero_eval"])] + _stage_evals(d["r1"]["stages"])[1:]
    figure_evals(r1_pairs, ["accuracy", "format", "language"], "R1 stages vs R1-Zero, same base",
                 Path(f"{stem}_d.png"))
    name = stem.name
    evals = [m for m in zero_metrics if "eval/accuracy" in m]
    first, last = evals[0], evals[-1]
    lines = [
        "# The R1 paper in miniature", "",
        f"Produced by `r1lab paper-mini` on {datetime.date.today().isoformat()}; machine: {machine}. "
        f"Base model: `{model}`. Every accuracy is on held-out questions never used in training, with its n "
        "and a 95% interval (Wilson for single greedy samples; ±1.96 standard errors across questions for pass@1 "
        "averaged over k samples). "
        f"Seeds: part c ran with {1 + len(c_seeds or {})}, parts a, b and d with one; differences inside the "
        "intervals are not findings.", "",
        f"Wall time of the parts on this machine: a {a['train_seconds'] / 60:.0f} min of GRPO (`make demo`, "
        f"{len(evals) - 1} held-out evaluations on top), d {d['seconds'] / 60:.0f} min, c {c_seconds / 60:.0f} min, "
        f"b {b['seconds'] / 60:.0f} min.", "",
        "## a. R1-Zero: accuracy and response length across RL steps", "",
        f"![a]({name}_a.png)", "",
        f"Held-out accuracy {first['eval/accuracy']:.2f} at step {first['step']} -> {last['eval/accuracy']:.2f} at "
        f"step {last['step']} (n = {int(last['eval/n'])}); held-out response length "
        f"{first.get('eval/length_mean', float('nan')):.1f} -> {last.get('eval/length_mean', float('nan')):.1f} tokens. "
        f"GRPO training time: {a['train_seconds'] / 60:.1f} min.", "",
        f"## b. pass@1 vs cons@{voting.k} before and after RL", "",
        f"![b]({name}_b.png)", "",
        f"k = {voting.k} samples per question, temperature {voting.temperature}, top-p {voting.top_p}, "
        f"≤ {voting.max_new_tokens} new tokens, {voting.limit} held-out questions.", "",
        f"| model | pass@1 [95% CI] | cons@{voting.k} [95% CI] | pass@{voting.k} | questions |", "|---|---|---|---|---|",
    ]
    for when, s in b.items():
        if when in ("stage", "seconds"):
            continue
        lo, hi = s["pass@1_ci95"]
        clo, chi = s["cons@k_ci95"]
        lines.append(f"| {when} | {s['pass@1']:.3f} [{lo:.3f}, {hi:.3f}] | {s['cons@k']:.3f} [{clo:.3f}, {chi:.3f}] | "
                     f"{s['pass@k'][str(voting.k)]:.3f} | {s['questions']} |")
    for when, s_ in b.items():
        if when not in ("stage", "seconds"):
            lines.append(f"{when}: cons@{voting.k} − pass@1 = {s_['cons@k'] - s_['pass@1']:+.3f}.")
    # What each side of the comparison cost: teacher sampling + rejection + SFT vs the GRPO run.
    times = {r["stage"]: r.get("cost_seconds", r["train_seconds"]) for r in c["stages"] if "train_seconds" in r}
    distilled = next(ev for name, ev in distill_pairs if name.startswith("3_sft"))
    rl_eval = next((ev for name, ev in distill_pairs if name.startswith("4_rl")), None)
    lines += ["", "## c. Distillation vs RL for the same student and wall time", "", f"![c]({name}_c.png)", "",
              f"Distillation cost (teacher sampling + rejection + SFT): {c['distill_seconds'] / 60:.1f} min; the GRPO "
              "baseline was stopped after the step that crossed the same wall time. Rejection sampling kept "
              f"{c['rejection']['kept']} of {c['rejection']['input']} teacher samples.", "",
              *_eval_table(distill_pairs, times), "",
              *([_compare("distilled student", distilled, "GRPO student", rl_eval), ""] if rl_eval else []),
              *_seed_table(c, c_seeds or {}),
              "## d. R1 (cold start, multi-stage) vs R1-Zero (pure RL) from the same base", "", f"![d]({name}_d.png)", "",
              *_eval_table(r1_pairs), "",
              _compare("R1 (final stage)", r1_pairs[-1][1], "R1-Zero", d["zero_eval"]) +
              f" R1-Zero: {a['train_seconds'] / 60:.1f} min of GRPO training; the R1 pipeline: "
              f"{d['r1']['total_seconds'] / 60:.1f} min over all its stages.", "",
              "Readability: format = the strict <think>/<answer> format; language = share of English words in the "
              "think section. The R1 pipeline stage by stage (stage time includes each stage's evaluation):", "",
              *summary_markdown("R1 pipeline", d["r1"]["stages"]).splitlines()[2:]]
    atomic_write_text(path, "\n".join(lines))
