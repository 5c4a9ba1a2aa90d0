"""run_python: execute untrusted Python in an OS-level sandbox and collect its capped output.

Isolation (see _launcher.py and docs/rewards.md): own pid, mount, network, IPC and UTS namespaces;
a read-only view of the filesystem with a fresh size-capped tmpfs as /tmp and working directory;
an unprivileged per-run uid with no capabilities and no_new_privs; rlimits on CPU time, address
space, processes, file size and open files; pids and memory cgroups where available; a seccomp
filter refusing non-Unix sockets; an empty environment. The parent enforces the wall-clock limit
and the output cap, then kills the process group, the namespace and anything left on the uid.
"""
from __future__ import annotations

import json
import math
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from r1lab.sandbox.cgroups import sandbox_cgroups
from r1lab.sandbox.leases import lease_uid

LAUNCHER = Path(__file__).with_name("_launcher.py")
_STARTUP_TIMEOUT_S = 15.0  # namespace + mount setup; seconds, on a loaded 2-core machine


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not the program failing): the message says which step."""


@dataclass(frozen=True)
class SandboxResult:
    ok: bool  # exit code 0, within the time limit, output under the cap
    stdout: str
    stderr: str
    exit_code: int | None  # 128+N when killed by signal N inside; negative when we killed the launcher
    timed_out: bool
    output_truncated: bool = False
    wall_time_s: float = 0.0


@dataclass(frozen=True)
class Limits:
    timeout: float = 5.0  # wall-clock seconds; CPU time is capped at ceil(timeout) + 1 per process
    memory_mb: int = 512  # address space per process, and the memory cgroup for the whole run
    max_processes: int = 16  # processes + threads of the run (RLIMIT_NPROC on its uid, pids cgroup)
    max_output_bytes: int = 1 << 20  # per stream; the run is killed when a stream exceeds it
    disk_mb: int = 64  # size of the tmpfs working directory (and the largest file)
    network_namespace: bool = True  # False tests the seccomp socket refusal alone


def _interpreter() -> tuple[str, str]:
    """The base interpreter (not the venv shim): the program gets the standard library, no site-packages."""
    return os.path.realpath(sys._base_executable if hasattr(sys, "_base_executable") else sys.executable), sys.base_prefix


def _launcher_config(uid: int, files: dict[str, str], limits: Limits, cgroup_procs: list[str]) -> bytes:
    python, prefix = _interpreter()
    return json.dumps({
        "uid": uid, "files": files, "argv": ["main.py"], "python": python, "python_prefix": prefix,
        "cpu_seconds": math.ceil(limits.timeout) + 1, "memory_bytes": limits.memory_mb << 20,
        "max_processes": limits.max_processes, "tmpfs_bytes": limits.disk_mb << 20,
        "network_namespace": limits.network_namespace, "cgroup_procs": cgroup_procs,
    }).encode()


def _wait_started(status_fd: int) -> None:
    """Block until the program exec'd (EOF, no bytes) or setup failed (an error message)."""
    message, deadline = b"", time.monotonic() + _STARTUP_TIMEOUT_S
    sel = selectors.DefaultSelector()
    sel.register(status_fd, selectors.EVENT_READ)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                raise SandboxError(f"sandbox did not start within {_STARTUP_TIMEOUT_S:.0f}s")
            chunk = os.read(status_fd, 4096)
            if not chunk:
                break
            message += chunk
    finally:
        sel.close()
    if message:
        raise SandboxError(f"sandbox setup failed: {message.decode(errors='replace')}")


def _pump(proc: subprocess.Popen, stdin: bytes, deadline: float, cap: int) -> tuple[bytes, bytes, bool, bool]:
    """Feed stdin and read both streams until they close, the deadline passes or a stream exceeds `cap`."""
    out = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    sel = selectors.DefaultSelector()
    for fd in out:
        sel.register(fd, selectors.EVENT_READ)
    pending = memoryview(stdin)
    if pending:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    timed_out = truncated = False
    open_streams = len(out)
    try:
        while open_streams:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in sel.select(remaining):
                fd = key.fd
                if fd not in out:  # stdin
                    try:
                        pending = pending[os.write(fd, pending[:65536]):]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        pending = pending[:0]  # the program stopped reading; that is its business
                    if not pending:
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(fd)
                    open_streams -= 1
                    continue
                out[fd] += chunk
                if len(out[fd]) > cap:
                    del out[fd][cap:]
                    truncated = True
                    open_streams = 0
                    break
    finally:
        sel.close()
    stdout, stderr = (bytes(b) for b in out.values())
    return stdout, stderr, timed_out, truncated


def _kill_group(proc: subprocess.Popen) -> None:
    # Before wait(): while the launcher is unreaped its pid, hence the group id, cannot be reused.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_files(files: dict[str, str], stdin: str = "", limits: Limits = Limits()) -> SandboxResult:
    """Run `main.py` from `files` (name → content, written into the fresh working directory)."""
    if "main.py" not in files:
        raise ValueError(f"files must contain main.py; got {sorted(files)}")
    with lease_uid() as uid, sandbox_cgroups(f"r1lab-sandbox-{uid}", limits.max_processes,
                                             limits.memory_mb << 20) as cgroup_procs:
        config_r, config_w = os.pipe()
        status_r, status_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(LAUNCHER), str(config_r), str(status_w)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(config_r, status_w), start_new_session=True, env={})
        except BaseException:
            os.close(config_w)
            os.close(status_r)
            raise
        finally:
            os.close(config_r)
            os.close(status_w)
        try:
            config = _launcher_config(uid, files, limits, cgroup_procs)
            # A thread: the config can exceed the pipe buffer and the launcher reads it only once started.
            writer = threading.Thread(target=_write_all, args=(config_w, config), daemon=True)
            writer.start()
            _wait_started(status_r)
            started = time.monotonic()
            # The launcher and init hold the output pipes too: EOF on both means the launcher has
            # exited, so its exit status (the program's) is final before the kill below.
            stdout, stderr, timed_out, truncated = _pump(
                proc, stdin.encode(), started + limits.timeout, limits.max_output_bytes)
        finally:
            _kill_group(proc)
            proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                stream.close()
            os.close(status_r)
    exit_code = proc.returncode
    return SandboxResult(
        ok=exit_code == 0 and not timed_out and not truncated,
        stdout=stdout.decode(errors="replace"), stderr=stderr.decode(errors="replace"),
        exit_code=exit_code, timed_out=timed_out, output_truncated=truncated,
        wall_time_s=time.monotonic() - started)


def _write_all(fd: int, data: bytes) -> None:
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except BrokenPipeError:
        pass  # the launcher died before reading; _wait_started reports why


def run_python(code: str, stdin: str = "", timeout: float = 5, memory_mb: int = 512, **limits) -> SandboxResult:
    """Run `code` as a Python program in the sandbox. Extra keyword arguments are `Limits` fields."""
    return run_files({"main.py": code}, stdin, Limits(timeout=timeout, memory_mb=memory_mb, **limits))
