"""The training pass's fused elementwise ops (r1lab.rl.fused_ops) against the model's own, one layer's worth each.

    python benchmarks/train_ops.py                 # SmolLM2-135M shapes, grpo_step config a's 1585 packed positions
    python benchmarks/train_ops.py --positions 6000 --reps 40
    python benchmarks/train_ops.py --compile       # + torch.compile (inductor) of the model's own op, a third column

For each op (pre-norm RMSNorm, silu(gate) * up, RoPE on q and k) forward + backward under bf16 autocast, as the
training pass runs it: the model's own module or function, then the fused one, interleaved, on the same inputs
and output gradients; best and median milliseconds per call, and the ratio. --compile adds the model's own op
under torch.compile (inductor, dynamic=False, compiled once before timing; the compile time is printed), the
alternative to hand-fused kernels that the speed issue asked to measure. A tiny randomly initialised model of
SmolLM2's dimensions supplies the modules (no files needed); the timings do not depend on the weights' values.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from r1lab.models import tiny_model
from r1lab.precision import cpu_name
from r1lab.rl import fused_ops

SMOLLM2 = dict(hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3, head_dim=64,
               num_hidden_layers=1)


def timed(run, inputs: list[torch.Tensor], grads) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = run()
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    torch.autograd.grad(outputs, inputs, grads(outputs))
    return time.perf_counter() - start


def cases(positions: int):
    model = tiny_model("llama", **SMOLLM2)
    layer = model.model.layers[0]
    hidden = torch.randn(1, positions, SMOLLM2["hidden_size"], requires_grad=True)
    norm = layer.input_layernorm
    yield "RMSNorm (pre-norm)", [hidden], lambda: norm(hidden), lambda: fused_ops._norm_forward(norm)(hidden)

    mlp_in = torch.randn(1, positions, SMOLLM2["hidden_size"], requires_grad=True)
    mlp = layer.mlp
    yield "MLP down(silu(gate) * up)", [mlp_in], lambda: mlp(mlp_in), lambda: fused_ops._mlp_forward(mlp)(mlp_in)

    heads, kv_heads, dim = SMOLLM2["num_attention_heads"], SMOLLM2["num_key_value_heads"], SMOLLM2["head_dim"]
    q = torch.randn(1, positions, heads, dim, dtype=torch.bfloat16).transpose(1, 2).requires_grad_()
    k = torch.randn(1, positions, kv_heads, dim, dtype=torch.bfloat16).transpose(1, 2).requires_grad_()
    cos, sin = model.model.rotary_emb(hidden, position_ids=(torch.arange(positions) % 200)[None])
    own = sys.modules[type(layer.self_attn).__module__].apply_rotary_pos_emb
    fused = fused_ops._rope_function(own, cast_back=False)
    yield "RoPE (q and k)", [q, k], lambda: own(q, k, cos, sin), lambda: fused(q, k, cos, sin)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", type=int, default=1585, help="packed positions in the pass (config a: 1585)")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the model's own op")
    args = parser.parse_args()
    if fused_ops._kernels() is None:
        raise SystemExit("the fused training ops did not build on this machine: nothing to compare")
    torch.manual_seed(0)
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
          f"{args.positions} positions, SmolLM2-135M layer shapes, bf16 autocast, forward + backward, "
          f"best / median of {args.reps}, interleaved\n")
    header = f"{'op (one layer)':28s} {'own best':>9s} {'median':>8s} {'fused best':>11s} {'median':>8s} {'speed-up':>9s}"
    print(header + (f" {'compiled best':>14s} {'median':>8s} {'compile s':>10s}" if args.compile else ""))
    for name, inputs, own, fused in cases(args.positions):
        fixed = {}

        def grads(outputs):  # the same output gradients for both sides
            for i, o in enumerate(outputs):
                if i not in fixed:
                    fixed[i] = torch.randn(o.shape, dtype=o.dtype)
            return [fixed[i] for i in range(len(outputs))]

        runs = {"own": own, "fused": fused}
        if args.compile:
            started = time.perf_counter()
            compiled_own = torch.compile(own, dynamic=False)
            timed(compiled_own, inputs, grads)  # the compile (forward and backward graphs)
            compile_seconds = time.perf_counter() - started
            runs["compiled"] = compiled_own
        for _ in range(3):
            for run in runs.values():
                timed(run, inputs, grads)
        times = {k: [] for k in runs}
        for _ in range(args.reps):
            for k, run in runs.items():
                times[k].append(timed(run, inputs, grads))
        best = {k: min(v) * 1e3 for k, v in times.items()}
        median = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        line = (f"{name:28s} {best['own']:9.2f} {median['own']:8.2f} {best['fused']:11.2f} {median['fused']:8.2f} "
                f"{median['own'] / median['fused']:8.2f}x")
        if args.compile:
            line += f" {best['compiled']:14.2f} {median['compiled']:8.2f} {compile_seconds:10.1f}"
        print(line)


if __name__ == "__main__":
    main()
