"""The GRPO training pass alone: the same step's samples trained on in each layout, side by side, and where its time goes.

    python benchmarks/train_pass.py                       # SmolLM2-135M, grpo_step config a (4 x 8, <= 64 tokens)
    python benchmarks/train_pass.py --config b --reps 2   # 8 x 8, <= 256 tokens
    python benchmarks/train_pass.py --profile packed      # + an operator breakdown of one pass
    python benchmarks/train_pass.py --bf16                # the pass under bf16 autocast (fp32 master weights)
    python benchmarks/train_pass.py --config b --layouts packed --micro-batch-tokens 0,2048,4096   # micro-batch sizing

One rollout (the GRPO trainer's own, fp32 native engine, the zero_smollm2 recipe's prompts and rewards)
gives one step's samples; then the training pass (`Learner.train`: forward, log-probs, loss, backward,
clip, AdamW step) runs on exactly those samples in each `grpo.layout`, interleaved (padded, shared_prompt,
packed, padded, ...), best of --reps. Reported: positions the transformer body computes (prompt + completion,
padding included), seconds per pass, the speed-up against `padded` (every row its own padded prompt +
completion) and `shared_prompt` (r1lab's layout before packing), and the achieved GFLOP/s counting only
useful work (6 x linear params x real tokens, prompts once per group) against this CPU's measured GEMM peak.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch

from r1lab.config import load_config
from r1lab.data import load_task
from r1lab.models import load_model, load_tokenizer
from r1lab.precision import cpu_name
from r1lab.rl.advantages import compute_advantages
from r1lab.rl.config import ZeroConfig
from r1lab.rl.layout import LAYOUTS
from r1lab.rl.trainer import GRPOTrainer, Policy
from r1lab.rl.update import prepare_step
from r1lab.runs import RunDir
from rollout import gemm_peak, linear_params

CONFIGS = {"a": (4, 8, 64), "b": (8, 8, 256)}  # as benchmarks/grpo_step.py
CATEGORIES = [  # operator name fragments -> where the time goes, first match wins
    ("matmul (linear layers, LM head, attention bmm)", ("addmm", "aten::mm", "matmul", "linear", "aten::bmm")),
    ("attention (softmax, mask; SDPA)", ("attention", "sdpa", "_flash", "softmax", "masked_fill")),
    ("LM head log-probs (fused head)", ("_TokenLogprobs", "_FusedHeadLogprobs", "logsumexp", "amax", "exp")),
    ("optimizer (AdamW)", ("adam", "_foreach", "Optimizer")),
    ("gather / scatter / copy", ("index", "gather", "scatter", "copy_", "cat", "clone", "contiguous", "repeat")),
    ("elementwise (norms, activations, RoPE)", ("_RMSNorm", "mul", "add", "pow", "sqrt", "silu", "gelu", "tanh", "sin",
                                                "cos", "neg", "div", "sub", "sigmoid", "mean", "sum", "fill", "where")),
]


def one_rollout(args) -> tuple[GRPOTrainer, object]:
    prompts, group, max_new = CONFIGS[args.config]
    cfg = load_config(ZeroConfig, f"recipes/{args.recipe}.yaml", [
        f"grpo.prompts_per_step={prompts}", f"grpo.group_size={group}", f"grpo.max_new_tokens={max_new}",
        f"grpo.micro_batch_size={min(prompts * group, 4096 // max_new)}", "grpo.beta=0.0", "grpo.mu=1",
        f"grpo.seed={args.seed}", f"grpo.bf16_autocast={str(args.bf16).lower()}", "run.eval_every=0",
        "run.samples_per_step=0", f"run.output_dir={args.out}",
    ])
    tokenizer = load_tokenizer(cfg.model.name)
    torch.manual_seed(cfg.grpo.seed)
    trainer = GRPOTrainer(cfg, Policy(load_model(cfg.model.name).train(), tokenizer), load_task(cfg.task).train, [],
                          RunDir(cfg.run.output_dir))
    data = trainer.rollout(1)
    trainer.score(data)
    data.advantages = compute_advantages(torch.tensor(data.total), group, cfg.grpo.advantage,
                                         cfg.grpo.scale_rewards).tolist()
    return trainer, data


def step_batch(trainer: GRPOTrainer, data, layout: str):
    trainer.cfg.grpo.layout = layout
    counted = [i for i, c in enumerate(data.completion_ids) if c]
    return prepare_step(data.completion_ids, data.prompt_ids, counted, torch.tensor(data.advantages),
                        data.sampler_logprobs, trainer.cfg.grpo, trainer.policy.tokenizer.pad_token_id,
                        trainer.device)


def body_positions(batch) -> int:
    """Positions the transformer body runs on for one micro-batch (padding included)."""
    if hasattr(batch, "layout"):  # packed
        return batch.input_ids.numel()
    if hasattr(batch, "row_prompt"):  # shared prompt: each prompt once + the padded completion grid
        return batch.prompt_ids.numel() + batch.completion_ids.numel()
    return batch.input_ids.numel()


def profile(trainer: GRPOTrainer, data, layout: str) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    sb = step_batch(trainer, data, layout)
    trainer.learner.train(sb)  # warm
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.learner.train(step_batch(trainer, data, layout))
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    spent = defaultdict(float)
    for e in events:
        name = next((cat for cat, keys in CATEGORIES if any(k.lower() in e.key.lower() for k in keys)), "other")
        spent[name] += e.self_cpu_time_total
    print(f"\nprofile of one {layout} pass (self CPU time, {total / 1e6:.1f} s in operators):")
    for name, us in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {name:34s} {us / 1e6:6.2f} s  {100 * us / total:5.1f}%")
    print("  top operators:")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]:
        print(f"    {e.key[:48]:48s} {e.self_cpu_time_total / 1e6:6.2f} s  {e.count:6d} calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="a")
    parser.add_argument("--recipe", default="zero_smollm2")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--layouts", default=",".join(reversed(LAYOUTS)))
    parser.add_argument("--profile", choices=LAYOUTS, help="also profile one pass in this layout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="train under bf16 autocast (the rollout stays fp32)")
    parser.add_argument("--micro-batch-tokens", default="0",
                        help="comma-separated grpo.micro_batch_tokens values to time the packed layout with "
                             "(0: micro-batches of grpo.micro_batch_size sequences)")
    parser.add_argument("--out", default="/tmp/r1lab-bench-train-pass")
    args = parser.parse_args()
    layouts = args.layouts.split(",")
    # (row label, layout, micro_batch_tokens): the packed layout once per micro-batch sizing asked for
    variants = [(layout if t == 0 else f"{layout} {t} tok", layout, t)
                for layout in layouts for t in ([int(v) for v in args.micro_batch_tokens.split(",")]
                                                if layout == "packed" else [0])]

    trainer, data = one_rollout(args)
    lengths = [len(c) for c in data.completion_ids]
    g = trainer.cfg.grpo
    prompt_tokens = sum(len(data.prompt_ids[k * g.group_size]) for k in range(g.prompts_per_step))
    useful = prompt_tokens + sum(lengths)
    flops = 6 * linear_params(trainer.policy.model) * useful  # forward 2, backward 4 per param per token
    dtype, dtype_name = (torch.bfloat16, "bf16") if args.bf16 else (torch.float32, "fp32")
    peak = gemm_peak(dtype)
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"model {trainer.cfg.model.name}, config {args.config}: {len(lengths)} completions, {sum(lengths)} tokens "
          f"(mean {sum(lengths) / len(lengths):.1f}, max {max(lengths)}), {g.prompts_per_step} prompts of "
          f"{prompt_tokens} tokens in all; {dtype_name}{' autocast' if args.bf16 else ''}, micro-batch {g.micro_batch_size}, best of {args.reps}")

    best = {label: float("inf") for label, _, _ in variants}
    positions, passes = {}, {}
    # One untimed pass first (allocator and oneDNN warm-up): without it the variant timed first carried that cost.
    trainer.learner.train(step_batch(trainer, data, variants[0][1]))
    for _ in range(args.reps):
        for label, layout, tokens in variants:
            g.micro_batch_tokens = tokens
            sb = step_batch(trainer, data, layout)
            positions[label], passes[label] = sum(body_positions(b) for b in sb.batches), len(sb.batches)
            start = time.perf_counter()
            trainer.learner.train(sb)
            best[label] = min(best[label], time.perf_counter() - start)
    gemm_now = max(peak, gemm_peak(dtype))
    print(f"{dtype_name} GEMM peak (1024^3, best sample): {gemm_now:.0f} GFLOP/s; useful work {flops / 1e9:.0f} GFLOP "
          f"({useful} prompt-once + completion tokens)\n")
    header = (f"{'layout':18s} {'micro-batches':>13s} {'body positions':>14s} {'s/pass':>8s} {'vs padded':>10s} {'vs shared':>10s} "
              f"{'useful GFLOP/s':>15s} {'% of peak':>10s}")
    print(header + "\n" + "-" * len(header))
    for label, _, _ in variants:
        rate = flops / best[label] / 1e9
        vs = {ref: f"{best[ref] / best[label]:.2f}x" if ref in best else "-" for ref in ("padded", "shared_prompt")}
        print(f"{label:18s} {passes[label]:13d} {positions[label]:14d} {best[label]:8.2f} {vs['padded']:>10s} "
              f"{vs['shared_prompt']:>10s} {rate:15.1f} {100 * rate / gemm_now:9.1f}%")
    if args.profile:
        profile(trainer, data, args.profile)


if __name__ == "__main__":
    main()
