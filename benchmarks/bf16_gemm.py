"""r1lab's bf16 decode matmul (rollout/csrc/bf16_gemm.cpp) vs oneDNN's prepacked bf16 linear, side by side.

    python benchmarks/bf16_gemm.py                 # SmolLM2-135M's matmul shapes, rows 1/8/32/64/256
    python benchmarks/bf16_gemm.py --rows 32 --reps 5

Both run on the same bf16 weights in this one process, interleaved: oneDNN through
torch.ops.mkldnn._linear_pointwise on a weight reordered by _reorder_linear_weight (what PackedLinear
used before), r1lab's kernel on its own packed layout. "hot" repeats one matmul (its weights stay in
cache); "cold step" runs all 121 matmuls of a SmolLM2 decode step (30 layers x q/k/v, o, gate/up, down,
and the LM head) on distinct weights, so every weight comes from memory as in the engine; it also times r1lab's kernel with its
next-panel prefetch off. GFLOP/s are
2 * rows * N * K over the best time of --reps; the bf16 1024^3 GEMM peak (torch's matmul) is printed
beside them.
"""
from __future__ import annotations

import argparse
import time

import torch

from r1lab.precision import cpu_name
from r1lab.rollout.decode_kernel import bf16_gemm

SHAPES = {"q/k/v": (960, 576), "o": (576, 576), "gate/up": (3072, 576), "down": (576, 1536), "lm head": (49152, 576)}
LAYERS = 30


def best_seconds(fn, reps: int, calls: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def peak() -> float:
    a, b = torch.randn(1024, 1024).bfloat16(), torch.randn(1024, 1024).bfloat16()
    return 2 * 1024 ** 3 / best_seconds(lambda: a @ b, 5, 2) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1,8,32,64,256")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    kernel = bf16_gemm()
    if kernel is None:
        raise SystemExit("the bf16 kernel is not available here (no AVX-512 BF16, AMX present, or no build)")
    torch.manual_seed(0)
    onednn = lambda x, w: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")  # noqa: E731
    ours = lambda x, w: kernel.linear(x, w, None, w.shape[0] * 16)  # noqa: E731  (N: whole 16-column blocks here)
    unprefetched = lambda x, w: kernel.linear(x, w, None, w.shape[0] * 16, prefetch=False)  # noqa: E731
    weights = {name: torch.randn(n, k).bfloat16() * 0.05 for name, (n, k) in SHAPES.items()}
    packed = {name: (torch.ops.mkldnn._reorder_linear_weight(w, 32), kernel.pack(w)) for name, w in weights.items()}
    step = [(name, *SHAPES[name]) for _ in range(LAYERS) for name in ("q/k/v", "o", "gate/up", "down")] + \
        [("lm head", *SHAPES["lm head"])]
    step_weights = [(torch.ops.mkldnn._reorder_linear_weight(w, 32), kernel.pack(w))
                    for w in (torch.randn(n, k).bfloat16() * 0.05 for _, n, k in step)]
    step_flops = sum(2 * n * k for _, n, k in step)
    print(f"machine: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"bf16 1024^3 GEMM peak {peak():.0f} GFLOP/s")
    print(f"{'rows':>5} | {'matmul':>8} | {'oneDNN GFLOP/s':>14} | {'r1lab GFLOP/s':>13} | {'r1lab / oneDNN':>14}")
    print("-" * 67)
    for rows in (int(r) for r in args.rows.split(",")):
        for name, (n, k) in SHAPES.items():
            x = torch.randn(rows, k).bfloat16()
            calls = max(2, int(2e8 // (2 * rows * n * k)))
            theirs = best_seconds(lambda: onednn(x, packed[name][0]), args.reps, calls)
            mine = best_seconds(lambda: ours(x, packed[name][1]), args.reps, calls)
            flops = 2 * rows * n * k
            print(f"{rows:>5} | {name:>8} | {flops / theirs / 1e9:>14.1f} | {flops / mine / 1e9:>13.1f} | "
                  f"{theirs / mine:>13.2f}x")
        xs = {k: torch.randn(rows, k).bfloat16() for k in (576, 1536)}
        timed = {}
        for side, run in (("oneDNN", onednn), ("r1lab", ours), ("no prefetch", unprefetched)):
            index = 0 if side == "oneDNN" else 1
            timed[side] = best_seconds(lambda: [run(xs[k], w[index]) for (_, _, k), w in zip(step, step_weights)],
                                       args.reps, 1)
        print(f"{rows:>5} | {'cold step':>8} | {rows * step_flops / timed['oneDNN'] / 1e9:>14.1f} | "
              f"{rows * step_flops / timed['r1lab'] / 1e9:>13.1f} | {timed['oneDNN'] / timed['r1lab']:>13.2f}x"
              f"   ({timed['oneDNN'] * 1e3:.1f} vs {timed['r1lab'] * 1e3:.1f} ms for all 121; r1lab without the "
              f"next-panel prefetch {timed['no prefetch'] * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
