"""Seconds per GRPO step: r1lab vs TRL's GRPOTrainer, same model, prompts, G, lengths, beta, lr, seed.

    python benchmarks/grpo_step.py --config a --steps 5        # 4 prompts x 8 samples, <= 64 new tokens
    python benchmarks/grpo_step.py --config b --steps 3        # 8 prompts x 8 samples, <= 256 new tokens

r1lab runs in fp32 (exact) and, where this CPU runs bf16 GEMMs faster, in bf16 (bf16 rollouts +
bf16 autocast in the training pass); TRL runs at its CPU default, fp32 (--trl-bf16 adds bf16=True).

Both trainers see the same rendered prompts (chat template + worked example + "<think>" prefill,
fed to TRL as plain text so it adds nothing), the same rewards (lenient accuracy + partial format),
fp32 master weights, beta = 0, one update per batch, loss_type "grpo", micro-batches of up to ~4k completion tokens. Besides speed it prints the mean
train reward of both after the same number of steps: speed must not come from learning less.
Needs the benchmark extra: pip install -e ".[bench]".
"""
from __future__ import annotations

import argparse
import importlib.util
import time

import torch

from r1lab.config import load_config
from r1lab.data import load_task
from r1lab.data.prompts import full_completion, render
from r1lab.models import load_model, load_tokenizer
from r1lab.precision import bf16_is_faster, cpu_bf16_speedup, cpu_name
from r1lab.rewards import score_batch
from r1lab.rl.config import ZeroConfig
from r1lab.rl.trainer import GRPOTrainer, Policy
from r1lab.runs import RunDir

CONFIGS = {"a": (4, 8, 64), "b": (8, 8, 256)}  # prompts per step, G, max new tokens
REWARDS = {"accuracy_lenient": 1.0, "format_partial": 1.0}


def zero_config(args, prompts: int, group: int, max_new: int, out: str) -> ZeroConfig:
    return load_config(ZeroConfig, "recipes/zero_smollm2.yaml", [
        f"grpo.prompts_per_step={prompts}", f"grpo.group_size={group}", f"grpo.max_new_tokens={max_new}",
        # as many completions per forward as fit ~4k completion tokens: the whole batch in (a), as TRL's
        # per-device batch; 16 in (b), where 64 x 256 positions of 49k-vocab logits would not fit 24 GB
        f"grpo.micro_batch_size={min(prompts * group, 4096 // max_new)}",
        f"grpo.lr={args.lr}", "grpo.beta=0.0", "grpo.mu=1", "grpo.loss_type=grpo", f"grpo.seed={args.seed}",
        f"engine={args.engine}", f"grpo.bf16_autocast={str(args.bf16).lower()}", f"run.output_dir={out}",
        f"engine_options={{dtype: {'bfloat16' if args.bf16 else 'model'}}}" if args.engine == "native" else "engine_options={}",
        "run.eval_every=0", "run.samples_per_step=0", f"rewards={REWARDS}",
    ])


def run_r1lab(cfg: ZeroConfig, task, steps: int) -> tuple[list[float], list[float], dict[str, list[float]]]:
    tokenizer = load_tokenizer(cfg.model.name)
    torch.manual_seed(cfg.grpo.seed)
    policy = Policy(load_model(cfg.model.name).train(), tokenizer)
    trainer = GRPOTrainer(cfg, policy, task.train, task.test, RunDir(cfg.run.output_dir))
    times, rewards, split = [], [], {"generate": [], "score": [], "train": []}
    for _ in range(steps):
        t0 = time.perf_counter()
        metrics = trainer.train_step()
        times.append(time.perf_counter() - t0)
        rewards.append(metrics["reward/total"])
        for part in split:
            split[part].append(metrics[f"time/{part}"])
    return times, rewards, split


def run_trl(cfg: ZeroConfig, task, steps: int, out: str, trl_bf16: bool = False) -> tuple[list[float], list[float]]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer as TRLGRPOTrainer

    tokenizer = load_tokenizer(cfg.model.name)
    g = cfg.grpo
    rows = task.train[: steps * g.prompts_per_step * 4]
    dataset = Dataset.from_list([{"prompt": render(r["question"], cfg.prompt, tokenizer), "row": r} for r in rows])

    def reward_fn(completions, row, **_):
        texts = [full_completion(c, cfg.prompt) for c in completions]
        return score_batch(texts, list(row), REWARDS).total

    class Clock(TrainerCallback):
        def __init__(self):
            self.times, self.rewards, self._t = [], [], 0.0

        def on_step_begin(self, *a, **k):
            self._t = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self._t)

        def on_log(self, args, state, control, logs=None, **k):
            if logs and "reward" in logs:
                self.rewards.append(logs["reward"])

    clock = Clock()
    trl_cfg = GRPOConfig(
        output_dir=out, max_steps=steps, per_device_train_batch_size=g.prompts_per_step * g.group_size,
        num_generations=g.group_size, max_completion_length=g.max_new_tokens, learning_rate=g.lr,
        beta=0.0, num_iterations=1, loss_type="grpo", temperature=g.temperature, top_p=g.top_p,
        scale_rewards="group", logging_steps=1, report_to=[], save_strategy="no", seed=g.seed,
        use_cpu=True, bf16=trl_bf16, gradient_accumulation_steps=1, lr_scheduler_type="constant",
        max_grad_norm=g.max_grad_norm, shuffle_dataset=True, disable_tqdm=True,
    )
    torch.manual_seed(g.seed)
    trainer = TRLGRPOTrainer(model=load_model(cfg.model.name), reward_funcs=reward_fn, args=trl_cfg,
                             train_dataset=dataset, processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    return clock.times, clock.rewards


def mean(xs):
    return sum(xs) / max(len(xs), 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="a")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", default="native", choices=["native", "hf"])
    parser.add_argument("--precisions", default="auto",
                        help="r1lab runs to time, comma-separated: fp32 (exact: fp32 rollouts and training) and/or "
                             "bf16 (bf16 rollouts + bf16 autocast training); auto = fp32,bf16 where bf16 is faster here")
    parser.add_argument("--trl-bf16", action="store_true", help="also time TRL with bf16=True (autocast)")
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--out", default="/tmp/r1lab-bench-grpo")
    args = parser.parse_args()
    precisions = (["fp32", "bf16"] if bf16_is_faster() else ["fp32"]) if args.precisions == "auto" \
        else args.precisions.split(",")

    if not args.skip_trl and importlib.util.find_spec("trl") is None:  # fail before minutes of r1lab steps
        parser.error('the TRL baseline needs trl: pip install -e ".[bench]" (or pass --skip-trl)')
    prompts, group, max_new = CONFIGS[args.config]
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, bf16/fp32 GEMM speed {cpu_bf16_speedup():.2f}x; config {args.config}: "
          f"{prompts} prompts x {group}, <= {max_new} new tokens, {args.steps} steps, lr {args.lr}, beta 0, "
          f"seed {args.seed}", flush=True)
    rows, splits = [], {}
    for precision in precisions:
        args.bf16 = precision == "bf16"
        cfg = zero_config(args, prompts, group, max_new, f"{args.out}/r1lab-{precision}")
        task = load_task(cfg.task)
        times, rewards, splits[precision] = run_r1lab(cfg, task, args.steps)
        rows.append((f"r1lab (engine={args.engine}, {precision})", times, rewards))
    if not args.skip_trl:
        for trl_bf16 in [False, True] if args.trl_bf16 else [False]:
            times, rewards = run_trl(cfg, task, args.steps, f"{args.out}/trl", trl_bf16)
            rows.append(("TRL GRPOTrainer" + (" (bf16)" if trl_bf16 else " (fp32)"), times, rewards))
    # the first step pays one-off costs on both sides; report the rest when there is a rest
    skip = 1 if args.steps > 2 else 0
    print(f"\n{'trainer':34s} {'s/step':>8s} {'first':>8s} {'mean reward':>12s} {'last reward':>12s}")
    for name, times, rewards in rows:
        print(f"{name:34s} {mean(times[skip:]):8.1f} {times[0]:8.1f} {mean(rewards):12.3f} {rewards[-1]:12.3f}")
    for precision, split in splits.items():
        print(f"r1lab {precision} time split (s/step): " + ", ".join(f"{part} {mean(xs[skip:]):.1f}"
                                                                     for part, xs in split.items()))
    baseline = next((r for r in rows if r[0] == "TRL GRPOTrainer (fp32)"), None)
    if baseline:
        print()
        for name, times, _ in rows:
            if name.startswith("r1lab"):
                print(f"speed-up {name} vs TRL (fp32): {mean(baseline[1][skip:]) / mean(times[skip:]):.2f}x")


if __name__ == "__main__":
    main()
