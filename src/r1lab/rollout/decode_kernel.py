"""r1lab's C++ kernels, built on first use. The native engine's: attention over the slot cache
(csrc/decode_attention.cpp), the fused elementwise ops around the matmuls (csrc/decode_fused.cpp), the
one-row int8 matmul of batch-1 decoding (csrc/int8_gemv.cpp), the bf16 matmul for decode-sized batches
(csrc/bf16_gemm.cpp) and temperature sampling (csrc/sampling.cpp); and the training pass's: the LM head's
per-block softmax (csrc/head_logprobs.cpp, used by rl.fused_head), RMSNorm and silu(gate) * up
(csrc/train_fused.cpp, rl.fused_ops).

torch.utils.cpp_extension compiles each once per machine kind (~30 s with 2 cores) into torch's
extension cache; the build is keyed by this CPU's vector units, because it is compiled with
-march=native and a build for AVX-512 would crash on an AVX2-only CPU sharing the same home.
Where they cannot build (no C++ compiler, no ninja) the engine keeps torch.bmm attention and plain
torch ops (fbgemm for int8), which compute the same things more slowly, and says so once.
R1LAB_DECODE_KERNEL=0 turns them all off.
"""
from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path

CSRC = Path(__file__).with_name("csrc")
FLAGS = ["-O3", "-march=native", "-fopenmp"]


@functools.cache
def _cpu_flags() -> str:
    """The first CPU's feature-flags line of /proc/cpuinfo ('' where it cannot be read: not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line for line in f if line.startswith("flags"))
    except (OSError, StopIteration):
        return ""


def _cpu_key() -> str:
    """A short hash of the CPU's feature flags (Linux); 'generic' where they cannot be read."""
    flags = _cpu_flags()
    return hashlib.sha1(flags.encode()).hexdigest()[:10] if flags else "generic"


def _source_key(stem: str) -> str:
    """A short hash of csrc/<stem>.cpp and the shared headers: a changed source (another checkout, another
    version) builds under its own name instead of loading, or racing to overwrite, another's build."""
    digest = hashlib.sha1((CSRC / f"{stem}.cpp").read_bytes())
    for header in sorted(CSRC.glob("*.h")):
        digest.update(header.read_bytes())
    return digest.hexdigest()[:8]


def _build(stem: str, what: str):
    """The compiled module csrc/<stem>.cpp, or None where R1LAB_DECODE_KERNEL=0 or it does not build (the caller
    falls back)."""
    if os.environ.get("R1LAB_DECODE_KERNEL", "1") == "0":
        return None
    try:
        import torch
        from torch.utils.cpp_extension import get_default_build_root, load

        name = f"r1lab_{stem}_{_cpu_key()}_{_source_key(stem)}"
        python = f"py{sys.version_info.major}{sys.version_info.minor}"
        build = Path(get_default_build_root(), f"{python}_torch{torch.__version__}", name)
        if not any(build.glob("*.so")):
            print(f"r1lab: compiling the {what} (once on this machine, ~30 s)", file=sys.stderr)
            build.mkdir(parents=True, exist_ok=True)
        return load(name=name, sources=[str(CSRC / f"{stem}.cpp")], extra_cflags=FLAGS, extra_ldflags=["-fopenmp"],
                    build_directory=str(build), verbose=False)
    except Exception as error:  # no compiler, no ninja, a failed build: all mean "use plain torch ops"
        print(f"r1lab: the {what} did not build ({type(error).__name__}: {error}); decode runs on plain torch ops "
              "(slower). R1LAB_DECODE_KERNEL=0 hides this.", file=sys.stderr)
        return None


@functools.cache
def decode_attention():
    """The attention kernel's function, or None where it is turned off or does not build."""
    module = _build("decode_attention", "decode-attention kernel")
    return None if module is None else module.decode_attention


@functools.cache
def fused_ops():
    """The fused elementwise decode ops (csrc/decode_fused.cpp: add_rms_norm, rope_into_cache, silu_mul), or None
    where they are turned off or do not build."""
    return _build("decode_fused", "fused decode ops")


@functools.cache
def int8_gemv():
    """The one-row AVX-512 VNNI int8 matmul (csrc/int8_gemv.cpp: pack, gemv), or None where it is turned off,
    does not build, or this CPU has no AVX-512 VNNI."""
    module = _build("int8_gemv", "one-row int8 matmul")
    return module if module is not None and module.available() else None


@functools.cache
def bf16_gemm():
    """The decode-batch bf16 matmul (csrc/bf16_gemm.cpp: pack, linear), or None where it is turned off, does not
    build, or this CPU has no AVX-512 BF16. Also None on CPUs with AMX: oneDNN multiplies bf16 there on AMX
    tiles, 8x the per-cycle bf16 throughput of the AVX-512 dot products this kernel uses (not measured against
    it here: the machines this was measured on have no AMX)."""
    if "amx_bf16" in _cpu_flags().split():
        return None
    module = _build("bf16_gemm", "bf16 decode matmul")
    return module if module is not None and module.available() else None


@functools.cache
def sampler():
    """One-pass temperature sampling over logit rows (csrc/sampling.cpp: sample), or None where it is turned off or
    does not build."""
    module = _build("sampling", "sampling kernel")
    return None if module is None else module.sample


@functools.cache
def head_logprobs():
    """The training head's per-block softmax (csrc/head_logprobs.cpp: block_stats, block_grad), or None where it is
    turned off or does not build (rl.fused_head then uses torch ops)."""
    return _build("head_logprobs", "LM-head log-prob kernel")


@functools.cache
def train_fused():
    """The training pass's fused elementwise ops (csrc/train_fused.cpp: rms_norm_forward/backward,
    silu_mul_forward/backward), or None where they are turned off or do not build (the model's own forward then
    runs)."""
    return _build("train_fused", "fused training ops")
