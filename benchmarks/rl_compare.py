"""The SmolLM2 demo task under several policy losses, and the rollout/trainer log-prob mismatch.

    python benchmarks/rl_compare.py losses --budget-s 150 --seeds 0 1      # writes docs/results/losses.md
    python benchmarks/rl_compare.py mismatch --steps 3                     # writes docs/results/mismatch.md
    r1lab report runs/losses/*                                            # every run's curves overlaid

`losses`: each loss of --losses (default grpo, dr_grpo, dapo, gspo, cispo) with each seed trains the recipe
(recipes/zero_smollm2.yaml) for the same training wall-clock budget (run.time_budget_s; evaluations
excluded), one run after another on an otherwise idle machine, then the held-out evaluation at the last
step. The table: held-out accuracy with its 95% Wilson interval, mean response length and token entropy
over the last 5 steps, steps reached. Each loss keeps the settings its paper uses (LOSS_SETTINGS).

`mismatch`: a few steps with the rollout engine in fp32 and in bf16 (and the training pass in fp32 and
bf16 autocast); every step logs mismatch/* (rl/mismatch.py): mean |log pi_trainer - log pi_sampler| over
the sampled tokens, the k3 estimate of KL(sampler || trainer) and the largest token ratio.

--set passes any config override (e.g. a tiny model for a smoke run: --set model.name=PATH).
"""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np

from r1lab.config import load_config
from r1lab.eval.metrics import wilson_interval
from r1lab.precision import cpu_name
from r1lab.rl.config import ZeroConfig
from r1lab.rl.trainer import train_zero

LOSS_SETTINGS = {
    "grpo": [],
    "dr_grpo": ["grpo.scale_rewards=none"],  # Dr. GRPO: no std division, constant normaliser
    "dapo": ["grpo.eps_high=0.28"],  # DAPO's clip-higher
    "gspo": ["grpo.eps_low=3e-4", "grpo.eps_high=4e-4"],  # GSPO's sequence-ratio clip range
    "cispo": ["grpo.eps_low=1.0", "grpo.eps_high=4.0"],  # weight in [0, 5]: TRL's recommended epsilon_high=5
    "sapo": [],
}


def run_one(recipe: str, out: Path, overrides: list[str]):
    cfg = load_config(ZeroConfig, recipe, [f"run.output_dir={out}", "run.plot_every=0", *overrides])
    return train_zero(cfg, progress=False).read_metrics()


def _last(metrics: list[dict], key: str, n: int = 5) -> float:
    values = [m[key] for m in metrics if key in m][-n:]
    return float(np.mean(values)) if values else float("nan")


def held_out(metrics: list[dict]) -> tuple[int, int]:
    final = [m for m in metrics if "eval/accuracy" in m][-1]
    n = int(final["eval/n"])
    return round(final["eval/accuracy"] * n), n


def accuracy_cell(hits: int, n: int) -> str:
    low, high = wilson_interval(hits, n)
    return f"{hits}/{n} = {hits / n:.2f} [{low:.2f}, {high:.2f}]"


def summarize(name: str, seed: int, metrics: list[dict]) -> str:
    steps = max(m["step"] for m in metrics)
    return (f"| {name} | {seed} | {steps} | {accuracy_cell(*held_out(metrics))} | "
            f"{_last(metrics, 'completion/length_mean'):.1f} | {_last(metrics, 'entropy'):.3f} |")


def pooled(name: str, runs: list[list[dict]]) -> str:
    """One loss over its seeds: the held-out questions of every seed's final evaluation together."""
    hits, n = map(sum, zip(*(held_out(metrics) for metrics in runs)))
    return (f"| **{name}** | all | | **{accuracy_cell(hits, n)}** | "
            f"{np.mean([_last(m, 'completion/length_mean') for m in runs]):.1f} | "
            f"{np.mean([_last(m, 'entropy') for m in runs]):.3f} |")


PANELS = [("train/accuracy_lenient", "train accuracy (lenient)"), ("completion/length_mean", "response length (tokens)"),
          ("entropy", "token entropy (nats)")]


def plot_overlaid(runs: dict[str, list[dict]], path: Path, window: int = 3) -> None:
    """Each run's curves against its training seconds (the budget's axis), a moving average of `window` steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.4))
    colors = dict(zip(sorted({name.split()[0] for name in runs}), plt.cm.tab10.colors))
    for name, metrics in runs.items():
        steps = [m for m in metrics if "time/step" in m]
        seconds = np.cumsum([m["time/step"] for m in steps])
        for ax, (key, _) in zip(axes, PANELS):
            ys = np.array([m.get(key, np.nan) for m in steps], dtype=float)
            smooth = np.convolve(ys, np.ones(window) / window, mode="valid") if len(ys) >= window else ys
            ax.plot(seconds[len(seconds) - len(smooth):], smooth, label=name, color=colors[name.split()[0]],
                    linestyle="-" if name.endswith("seed 0") else "--", marker="o" if len(smooth) < 20 else None,
                    markersize=3)
    for ax, (_, title) in zip(axes, PANELS):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training seconds")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def losses(args) -> list[str]:
    lines = [f"Budget: {args.budget_s:.0f} s of training wall time per run; recipe {args.recipe}; "
             f"overrides {args.set or 'none'}.", "",
             "| loss | seed | steps | held-out accuracy [95% Wilson] | length (last 5) | entropy (last 5) |",
             "|---|---|---|---|---|---|"]
    runs = {}
    for seed in args.seeds:  # seed-major: a slow drift of the machine touches every loss alike
        for name in args.losses:
            out = Path(args.out) / f"{name}-seed{seed}"
            runs[f"{name} seed {seed}"] = metrics = run_one(args.recipe, out, [
                f"run.eval_at_start={not runs}",  # greedy from the same model: one step-0 evaluation serves all
                f"grpo.loss_type={name}", f"grpo.seed={seed}", f"run.time_budget_s={args.budget_s}",
                f"grpo.steps={args.max_steps}", f"run.eval_every={args.max_steps}", *LOSS_SETTINGS[name], *args.set])
            print(summarize(name, seed, metrics), flush=True)
    for name in args.losses:
        lines += [summarize(name, seed, runs[f"{name} seed {seed}"]) for seed in args.seeds]
        lines.append(pooled(name, [runs[f"{name} seed {seed}"] for seed in args.seeds]))
    start = next(m for m in next(iter(runs.values())) if "eval/accuracy" in m)  # the first run's step 0
    lines += ["", f"Step 0 (before any update, greedy, the same for every run): "
                  f"{accuracy_cell(round(start['eval/accuracy'] * start['eval/n']), int(start['eval/n']))}."]
    figure = Path(args.doc or "docs/results/losses.md").with_suffix(".png")
    plot_overlaid(runs, figure)
    return lines + ["", f"![train accuracy, response length and entropy per loss]({figure.name})", "",
                    f"Every curve in one interactive page: `r1lab report {args.out}/*`."]


MISMATCH_CASES = {  # name -> overrides: the engine's dtype, the training pass's precision
    "engine fp32, trainer fp32": ["engine_options={dtype: float32}", "grpo.bf16_autocast=false"],
    "engine bf16, trainer fp32": ["engine_options={dtype: bfloat16, prepack: false}", "grpo.bf16_autocast=false"],
    "engine bf16, trainer bf16 autocast": ["engine_options={dtype: bfloat16, prepack: false}",
                                           "grpo.bf16_autocast=true"],
    # the engine's KV cache is bf16 where the decode-attention kernel builds; this row keeps it fp32
    "engine bf16 with fp32 K/V, trainer fp32": ["engine_options={dtype: bfloat16, prepack: false, kv_dtype: float32}",
                                                "grpo.bf16_autocast=false"],
}


def mismatch(args) -> list[str]:
    lines = [f"{args.steps} steps of recipe {args.recipe} per row (each step scores before it updates: the trainer "
             "sees the weights the engine sampled from); "
             f"overrides {args.set or 'none'}. Means over the steps.", "",
             "| case | mean abs(dlogp) | k3 KL(sampler ‖ trainer) | max token ratio |", "|---|---|---|---|"]
    for i, (name, overrides) in enumerate(MISMATCH_CASES.items()):
        if args.cases and i not in args.cases:
            continue
        metrics = run_one(args.recipe, Path(args.out) / f"mismatch-{i}", [
            f"grpo.steps={args.steps}", "run.eval_every=0", "grpo.log_mismatch=true", *overrides,
            *args.set])
        lines.append(f"| {name} | {_last(metrics, 'mismatch/abs_logp_diff', args.steps):.2e} | "
                     f"{_last(metrics, 'mismatch/kl_k3', args.steps):.2e} | "
                     f"{max(m['mismatch/max_ratio'] for m in metrics):.3f} |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["losses", "mismatch"])
    parser.add_argument("--recipe", default="recipes/zero_smollm2.yaml")
    parser.add_argument("--losses", nargs="+", default=["grpo", "dr_grpo", "dapo", "gspo", "cispo"],
                        choices=sorted(LOSS_SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--budget-s", type=float, default=900.0, help="training wall time per run")
    parser.add_argument("--max-steps", type=int, default=10_000, help="a step cap beyond the budget")
    parser.add_argument("--steps", type=int, default=3, help="mismatch: steps per case")
    parser.add_argument("--cases", nargs="+", type=int, default=[],
                        help=f"mismatch: only these rows (0-based) of {list(MISMATCH_CASES)}")
    parser.add_argument("--out", default="runs/losses")
    parser.add_argument("--doc", default=None, help="markdown file to write (default docs/results/<what>.md)")
    parser.add_argument("--set", action="append", default=[], help="a config override, repeatable")
    args = parser.parse_args()
    lines = losses(args) if args.what == "losses" else mismatch(args)
    header = [f"# {'Policy losses side by side' if args.what == 'losses' else 'Rollout/trainer mismatch'}", "",
              f"Measured {datetime.date.today()} on {cpu_name()} "
              f"by `python benchmarks/rl_compare.py {args.what}` (see its docstring).", ""]
    doc = Path(args.doc or f"docs/results/{args.what}.md")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(header + lines) + "\n")
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
