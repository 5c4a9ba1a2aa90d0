"""r1lab.allocator: freed memory stays with the process (no trimming, no mmap per large block)."""
import platform
import subprocess
import sys

import pytest

PROBE = """
import os, sys
import torch
from r1lab.allocator import keep_freed_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
block = torch.ones(200 * 2**20 // 4)  # 200 MB, touched
held = rss_mb()
del block
print(applied, held - rss_mb())  # MB handed back to the kernel by the free
"""


def _released_mb(mode: str, env: dict | None = None) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=env)
    applied, released = out.stdout.split()
    return applied, float(released)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tuned_processes_keep_a_freed_block_and_default_ones_hand_it_back():
    assert _released_mb("default")[1] > 150  # glibc unmaps a block this large on free
    applied, released = _released_mb("tuned")
    assert applied == "True" and released < 10


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc")
def test_r1lab_malloc_system_leaves_glibc_alone():
    import os

    applied, released = _released_mb("tuned", env={**os.environ, "R1LAB_MALLOC": "system"})
    assert applied == "False" and released > 150
