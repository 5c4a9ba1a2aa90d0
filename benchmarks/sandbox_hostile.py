"""Run the hostile-program suite through r1lab.sandbox and print what happened to each program.

The assertions live in tests/test_sandbox.py; this prints the measured outcome (exit code, time,
output size, leftover processes, files changed outside the sandbox) for docs/rewards.md.
Needs root. Usage: python benchmarks/sandbox_hostile.py
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

from r1lab.sandbox import run_python
from r1lab.sandbox.leases import stray_processes


def programs(port: int, marker: str) -> dict[str, tuple[str, dict]]:
    escape = [str(Path.home() / marker), f"/tmp/{marker}", f"/var/tmp/{marker}", f"/dev/shm/{marker}"]
    return {
        "bounded fork loop (200 tries, cap 16)": (
            "import os, time\nn = 0\nfor _ in range(200):\n    try:\n        pid = os.fork()\n    except OSError:\n"
            "        continue\n    if pid == 0:\n        time.sleep(5)\n        os._exit(0)\n    n += 1\nprint(n, 'forks')", {}),
        "fork bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", {"timeout": 2}),
        "infinite loop": ("while True:\n    pass", {"timeout": 2}),
        "10 GB allocation": ("x = bytearray(10 * 1024 ** 3)", {}),
        "connect to 127.0.0.1 listener": (f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)", {}),
        "same, no network namespace (seccomp only)": (
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)", {"network_namespace": False}),
        "write home, /tmp, /var/tmp, /dev/shm": (
            f"for p in {escape!r}:\n    try:\n        open(p, 'w').write('x')\n    except OSError as e:\n"
            "        print(p, e.strerror)", {}),
        "read parent env / environ": (
            "import os\nprint(os.environ.get('R1LAB_HOSTILE_SECRET'))\n"
            f"try:\n    print(open('/proc/{os.getpid()}/environ').read())\nexcept OSError as e:\n    print(e.strerror)", {}),
        "kill the parent pid, pid 1, -1": (
            f"import os\nfor p in ({os.getpid()}, os.getppid(), 1, -1):\n    try:\n        os.kill(p, 9)\n"
            "    except OSError as e:\n        print(p, e.strerror)", {}),
        "print 1 GB": ("import sys\nc = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(c)", {"timeout": 20}),
        "deep recursion": ("import sys\nsys.setrecursionlimit(10 ** 8)\ndef f(n):\n    return f(n + 1)\nf(0)", {"timeout": 3}),
        "daemonised child sleeping forever": (
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        os.close(1); os.close(2)\n"
            "        time.sleep(10 ** 6)\n    os._exit(0)\nprint('parent done')", {}),
        "os._exit(0) before any work": ("import os\nos._exit(0)\nprint('never')", {}),
    }


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    marker = f"r1lab-hostile-{uuid.uuid4().hex[:8]}"
    os.environ["R1LAB_HOSTILE_SECRET"] = secret = uuid.uuid4().hex
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0)
    print(f"{'program':44} {'exit':>5} {'timeout':>7} {'trunc':>5} {'out':>9} {'wall s':>6} {'left':>4}  notes")
    for name, (code, limits) in programs(server.getsockname()[1], marker).items():
        start = time.monotonic()
        r = run_python(code, **limits)
        wall = time.monotonic() - start
        left = len(stray_processes())
        try:
            server.accept()
            notes = "LISTENER GOT A CONNECTION"
        except BlockingIOError:
            notes = ""
        if secret in r.stdout + r.stderr:
            notes += " SECRET LEAKED"
        tail = (r.stdout.strip().splitlines() or [""])[-1][:60] if len(r.stdout) < 4096 else ""
        err = (r.stderr.strip().splitlines() or [""])[-1][:50]
        notes += f" {tail or err}".rstrip()
        print(f"{name:44} {r.exit_code!s:>5} {r.timed_out!s:>7} {r.output_truncated!s:>5} {len(r.stdout):>9} "
              f"{wall:6.2f} {left:>4}  {notes.strip()}")
    escaped = [p for p in (Path.home() / marker, Path("/tmp") / marker, Path("/var/tmp") / marker,
                           Path("/dev/shm") / marker) if p.exists()]
    print(f"files created outside the sandbox: {escaped or 'none'}; this process (pid {os.getpid()}) is alive")


if __name__ == "__main__":
    main()
