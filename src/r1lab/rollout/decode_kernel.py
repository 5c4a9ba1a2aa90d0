"""The native engine's C++ decode-attention kernel (csrc/decode_attention.cpp), built on first use.

torch.utils.cpp_extension compiles it once per machine kind (~30 s with 2 cores) into torch's
extension cache; the build is keyed by this CPU's vector units, because it is compiled with
-march=native and a build for AVX-512 would crash on an AVX2-only CPU sharing the same home.
Where it cannot build (no C++ compiler, no ninja) the engine keeps torch.bmm attention, which
computes the same thing more slowly, and says so once. R1LAB_DECODE_KERNEL=0 turns it off.
"""
from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path

SOURCE = Path(__file__).with_name("csrc") / "decode_attention.cpp"
FLAGS = ["-O3", "-march=native", "-fopenmp"]


def _cpu_key() -> str:
    """A short hash of the CPU's feature flags (Linux); 'generic' where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags"))
    except (OSError, StopIteration):
        return "generic"
    return hashlib.sha1(flags.encode()).hexdigest()[:10]


@functools.cache
def decode_attention():
    """The kernel's function, or None where it is turned off or does not build."""
    if os.environ.get("R1LAB_DECODE_KERNEL", "1") == "0":
        return None
    try:
        import torch
        from torch.utils.cpp_extension import get_default_build_root, load

        name = f"r1lab_decode_attention_{_cpu_key()}"
        python = f"py{sys.version_info.major}{sys.version_info.minor}"
        build = Path(get_default_build_root(), f"{python}_torch{torch.__version__}", name)
        if not any(build.glob("*.so")):
            print("r1lab: compiling the decode-attention kernel (once on this machine, ~30 s)", file=sys.stderr)
            build.mkdir(parents=True, exist_ok=True)
        module = load(name=name, sources=[str(SOURCE)], extra_cflags=FLAGS, extra_ldflags=["-fopenmp"],
                      build_directory=str(build), verbose=False)
    except Exception as error:  # no compiler, no ninja, a failed build: all mean "use torch.bmm"
        print(f"r1lab: the decode-attention kernel did not build ({type(error).__name__}: {error}); "
              "decode attention runs on torch.bmm (slower). R1LAB_DECODE_KERNEL=0 hides this.", file=sys.stderr)
        return None
    return module.decode_attention
