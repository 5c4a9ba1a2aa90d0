"""One unprivileged uid per running sandbox, leased across threads and processes.

RLIMIT_NPROC counts processes per real uid (and root is exempt), so a process cap holds only if
no two concurrent sandboxes share a uid. A lease is an flock on a per-uid lock file: it is released
by the kernel if its holder dies, and it coordinates every r1lab process on the machine.
"""
from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

BASE_UID = 60000
MAX_SLOTS = 64
LOCK_DIR = Path("/tmp/.r1lab-sandbox-leases")

_local_slots = threading.Semaphore(MAX_SLOTS)


def _lock_dir() -> Path:
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    return LOCK_DIR


def processes_of(uid: int) -> list[int]:
    """Pids whose real uid is `uid` (sandboxes live in their own pid namespaces, but all show in ours)."""
    return processes_in_uid_range(uid, uid + 1)


def processes_in_uid_range(low: int, high: int) -> list[int]:
    """Pids whose real uid is in [low, high)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("Uid:"):
                        if low <= int(line.split()[1]) < high:
                            found.append(int(entry.name))
                        break
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # exited while we looked
    return found


def kill_uid(uid: int, wait_s: float = 2.0) -> int:
    """SIGKILL every process of `uid` until none is left; returns how many were found on the first pass."""
    first = processes_of(uid)
    pids, deadline = first, time.monotonic() + wait_s
    while pids:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"sandbox uid {uid}: processes {pids} survive SIGKILL")
        time.sleep(0.01)
        pids = processes_of(uid)
    return len(first)


def stray_processes() -> list[int]:
    """Processes of sandbox uids that no run holds: leftovers that should not exist (a health check).

    A uid whose lease is held (by any process, this one included) is skipped: its run is in progress.
    """
    stray = []
    for uid in sorted({_uid_of(pid) for pid in processes_in_uid_range(BASE_UID, BASE_UID + MAX_SLOTS)} - {None}):
        fd = os.open(_lock_dir() / f"uid-{uid}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            stray += processes_of(uid)  # looked again under the lock: a run that just ended has cleaned up
        except BlockingIOError:
            pass
        finally:
            os.close(fd)
    return stray


def _uid_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("Uid:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return None


@contextmanager
def lease_uid() -> Iterator[int]:
    """Hold a free sandbox uid for the duration of the block; any process it left behind is killed."""
    if os.geteuid() != 0:
        raise PermissionError("r1lab.sandbox needs root (namespaces, mounts, dropping to a sandbox uid)")
    with _local_slots:
        while True:
            for slot in range(MAX_SLOTS):
                fd = os.open(_lock_dir() / f"uid-{BASE_UID + slot}.lock", os.O_CREAT | os.O_RDWR, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                uid = BASE_UID + slot
                try:
                    kill_uid(uid)  # a holder that crashed may have left processes behind
                    yield uid
                    return
                finally:
                    kill_uid(uid)
                    os.close(fd)  # releases the flock
            time.sleep(0.05)  # every uid is leased by other processes on this machine
