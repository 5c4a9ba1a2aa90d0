"""Per-sandbox pids and memory cgroups (v1): caps on the whole process tree, not per process.

rlimits bound each process (address space) and each uid (process count); a cgroup bounds their
sum, so sixteen children that each stay under the address-space limit still share one memory
budget. Optional: where the controllers are not mounted or not writable, rlimits alone apply.
"""
from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _own_group(controller: str) -> Path | None:
    """This process's cgroup directory for a v1 controller, or None if it is not mounted."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            group = CGROUP_ROOT / controller / path.lstrip("/")
            return group if group.is_dir() else None
    return None


def cgroup_available(controller: str) -> bool:
    """Can this process create child groups for `controller` (pids, memory)?"""
    parent = _own_group(controller)
    if parent is None:
        return False
    probe = parent / f"r1lab-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
        return True
    except OSError:
        return False


def _kill_members(group: Path) -> None:
    for _ in range(200):
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except OSError:
            return
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


@contextmanager
def sandbox_cgroups(name: str, max_processes: int, memory_bytes: int) -> Iterator[list[str]]:
    """Create the groups; yields the `cgroup.procs` files the launcher must join. Removed afterwards."""
    limits = {"pids": {"pids.max": str(max_processes)},
              "memory": {"memory.limit_in_bytes": str(memory_bytes), "memory.swappiness": "0"}}
    made: list[Path] = []
    try:
        for controller, settings in limits.items():
            parent = _own_group(controller)
            if parent is None:
                continue
            group = parent / name
            try:
                group.mkdir(exist_ok=True)
                made.append(group)
                for file, value in settings.items():
                    (group / file).write_text(value)
            except OSError:
                continue  # controller present but not delegated to us: rlimits still hold
        yield [str(g / "cgroup.procs") for g in made]
    finally:
        for group in made:
            _kill_members(group)
            for _ in range(100):  # rmdir fails while the kernel is still tearing tasks down
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
