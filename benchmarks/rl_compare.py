"""The SmolLM2 demo task under several policy losses, and the rollout/trainer log-prob mismatch.

    python benchmarks/rl_compare.py losses --budget-s 900 --seeds 0 1      # writes docs/results/losses.md
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
import platform
from pathlib import Path

import numpy as np

from r1lab.config import load_config
from r1lab.eval.metrics import wilson_interval
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


def summarize(name: str, seed: int, metrics: list[dict]) -> str:
    final = [m for m in metrics if "eval/accuracy" in m][-1]
    n = int(final["eval/n"])
    hits = round(final["eval/accuracy"] * n)
    low, high = wilson_interval(hits, n)
    steps = max(m["step"] for m in metrics)
    return (f"| {name} | {seed} | {steps} | {hits}/{n} = {hits / n:.2f} [{low:.2f}, {high:.2f}] | "
            f"{_last(metrics, 'completion/length_mean'):.1f} | {_last(metrics, 'entropy'):.3f} |")


def losses(args) -> list[str]:
    lines = [f"Budget: {args.budget_s:.0f} s of training wall time per run; recipe {args.recipe}; "
             f"overrides {args.set or 'none'}.", "",
             "| loss | seed | steps | held-out accuracy [95% Wilson] | length (last 5) | entropy (last 5) |",
             "|---|---|---|---|---|---|"]
    for name in args.losses:
        for seed in args.seeds:
            out = Path(args.out) / f"{name}-seed{seed}"
            metrics = run_one(args.recipe, out, [
                f"grpo.loss_type={name}", f"grpo.seed={seed}", f"run.time_budget_s={args.budget_s}",
                f"grpo.steps={args.max_steps}", f"run.eval_every={args.max_steps}", *LOSS_SETTINGS[name], *args.set])
            lines.append(summarize(name, seed, metrics))
            print(lines[-1], flush=True)
    return lines + ["", f"Curves overlaid: `r1lab report {args.out}/*`."]


MISMATCH_CASES = {  # name -> overrides: the engine's dtype, the training pass's precision
    "engine fp32, trainer fp32": ["engine_options={dtype: float32}", "grpo.bf16_autocast=false"],
    "engine bf16, trainer fp32": ["engine_options={dtype: bfloat16, prepack: false}", "grpo.bf16_autocast=false"],
    "engine bf16, trainer bf16 autocast": ["engine_options={dtype: bfloat16, prepack: false}",
                                           "grpo.bf16_autocast=true"],
}


def mismatch(args) -> list[str]:
    lines = [f"{args.steps} steps of recipe {args.recipe} per row (each step scores before it updates: the trainer "
             "sees the weights the engine sampled from); "
             f"overrides {args.set or 'none'}. Means over the steps.", "",
             "| case | mean abs(dlogp) | k3 KL(sampler ‖ trainer) | max token ratio |", "|---|---|---|---|"]
    for i, (name, overrides) in enumerate(MISMATCH_CASES.items()):
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
    parser.add_argument("--out", default="runs/losses")
    parser.add_argument("--doc", default=None, help="markdown file to write (default docs/results/<what>.md)")
    parser.add_argument("--set", action="append", default=[], help="a config override, repeatable")
    args = parser.parse_args()
    lines = losses(args) if args.what == "losses" else mismatch(args)
    header = [f"# {'Policy losses side by side' if args.what == 'losses' else 'Rollout/trainer mismatch'}", "",
              f"Measured {datetime.date.today()} on {platform.processor() or platform.machine()} "
              f"by `python benchmarks/rl_compare.py {args.what}` (see its docstring).", ""]
    doc = Path(args.doc or f"docs/results/{args.what}.md")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(header + lines) + "\n")
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
