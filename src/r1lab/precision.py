"""When to compute in bf16: only where this machine runs it faster than fp32.

CPUs differ by an order of magnitude here: with AVX-512 BF16 (or AMX) a bf16 GEMM runs ~4x faster
than fp32; on AVX2-only CPUs torch emulates bf16 and the same GEMM runs 50-200x slower. A recipe
must not hard-code either, so "auto" measures: one decode-sized GEMM probe per process (~50 ms).
"""
from __future__ import annotations

import os
import platform
import time

import torch

from r1lab import dist

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# bf16 must beat fp32 by this much on the probe: the matmuls speed up, the elementwise ops around
# them do not, so a small GEMM gain can vanish over a whole forward pass.
AUTO_BF16_MIN_SPEEDUP = 1.5


def _best_seconds(a: torch.Tensor, b: torch.Tensor, reps: int = 8, calls: int = 4) -> float:
    a @ b  # warm-up: first calls pick kernels and allocate
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(calls):
            a @ b
        best = min(best, (time.perf_counter() - start) / calls)
    return best


_measured_speedup: float | None = None  # this process's probe, or rank 0's after agree_across_ranks()


def cpu_bf16_speedup() -> float:
    """fp32 time / bf16 time of a (64 x 1024) @ (1024 x 1024) GEMM on this CPU, best of 8 (measured once)."""
    global _measured_speedup
    if _measured_speedup is None:
        a, b = torch.randn(64, 1024), torch.randn(1024, 1024)
        _measured_speedup = _best_seconds(a, b) / _best_seconds(a.bfloat16(), b.bfloat16())
    return _measured_speedup


def agree_across_ranks() -> None:
    """Under torchrun, every rank adopts rank 0's measurement, so every "auto" (autocast, engine dtype,
    evaluations) resolves alike on all ranks. A collective: trainers call it on every rank at start."""
    global _measured_speedup
    if dist.is_distributed():
        _measured_speedup = dist.broadcast_object(cpu_bf16_speedup() if dist.rank() == 0 else None)


def cpu_name() -> str:
    """The CPU's model name, its usable cores and whether it has AVX-512 BF16: the facts a benchmark figure needs."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as info:
            first_cpu = info.read().split("\n\n")[0]
        fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in first_cpu.splitlines())}
    except OSError:  # not Linux
        pass
    name, flags = fields.get("model name") or platform.processor() or platform.machine(), fields.get("flags", "").split()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    isa = "AVX-512 BF16" if "avx512_bf16" in flags else "AVX2, no AVX-512 BF16" if "avx2" in flags else ""
    return f"{name}, {cores} cores" + (f", {isa}" if isa else "")


def bf16_is_faster(device: torch.device | str = "cpu") -> bool:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_bf16_speedup() >= AUTO_BF16_MIN_SPEEDUP


def resolve_dtype(dtype: torch.dtype | str | None, model_dtype: torch.dtype,
                  device: torch.device | str = "cpu") -> torch.dtype:
    """A compute dtype from a torch dtype, a name ("float32", "bfloat16", "float16"), None or
    "model" (the model's own), or "auto" (bf16 for an fp32 model where bf16 is faster here)."""
    if dtype is None or dtype == "model":
        return model_dtype
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if model_dtype == torch.float32 and bf16_is_faster(device) else model_dtype
    if dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be one of auto, model, {', '.join(DTYPES)} (or a torch.dtype), got {dtype!r}")


def use_bf16_autocast(setting: bool | str, device: torch.device | str = "cpu") -> bool:
    """A trainer's `bf16_autocast` setting (true, false or "auto") resolved for this machine."""
    if setting == "auto":
        return bf16_is_faster(device)
    if not isinstance(setting, bool):
        raise ValueError(f"bf16_autocast must be true, false or auto, got {setting!r}")
    return setting
