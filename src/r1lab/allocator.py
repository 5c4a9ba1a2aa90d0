"""glibc's malloc set up for a training loop: freed memory kept for the next step instead of handed back.

A training step allocates and frees the same ~1 GB of activations, gradients and LM-head blocks every
time. glibc's defaults return that memory to the kernel (heap trimming; every allocation over its mmap
threshold, at most 32 MB, gets a fresh mapping and is unmapped on free), so each step faults it in again a
4 kB page at a time: measured on 2 cores (benchmarks/train_pass.py, SmolLM2 GRPO config a, bf16), ~290k
page faults and ~1 s of kernel time a pass, elementwise ops over fresh pages 5-10x slower than over reused
ones. Turning trimming and mmap off keeps the process at its peak footprint, which a training process
reaches every step anyway, and the faults go to ~0 from the second step on. (tcmalloc or jemalloc via
LD_PRELOAD do the same; this needs nothing installed.)

`R1LAB_MALLOC=system` leaves glibc's defaults alone. A no-op off glibc.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4  # malloc.h
_TOP_PAD = 64 * 2**20  # grow the heap in steps of this much, not one allocation at a time


@functools.cache
def keep_freed_memory() -> bool:
    """Tune this process's glibc malloc for training (once); True where it was applied."""
    if os.environ.get("R1LAB_MALLOC", "").lower() == "system" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return all(libc.mallopt(option, value) == 1 for option, value in (
        (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, _TOP_PAD), (_M_MMAP_MAX, 0)))
