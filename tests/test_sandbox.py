"""The sandbox contains hostile programs: the test process lives, the run fails, nothing is left over."""
import os
import socket
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from r1lab.sandbox import Limits, SandboxPool, run_python
from r1lab.sandbox import runner
from r1lab.sandbox.cgroups import cgroup_available
from r1lab.sandbox.leases import BASE_UID, stray_processes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root (as in CI)")


@pytest.fixture(autouse=True)
def no_stragglers():
    yield
    # Only uids nobody leases: another session's sandbox may be running beside this test.
    assert stray_processes() == [], "a sandboxed process outlived its run"


def run(code: str, **kw):
    return run_python(textwrap.dedent(code), **kw)


# ---- ordinary behaviour ----

def test_runs_code_with_stdin_and_reports_exit_code():
    r = run("import sys\nprint(sys.stdin.read().upper())\nsys.exit(3)", stdin="abc")
    assert (r.stdout, r.exit_code, r.ok, r.timed_out) == ("ABC\n", 3, False, False)


def test_success_is_exit_code_zero():
    r = run("print(6 * 7)")
    assert r.ok and r.stdout == "42\n" and r.exit_code == 0


def test_program_runs_as_unprivileged_uid_without_capabilities():
    r = run("""
        import os
        print(os.getuid(), os.getgid(), os.getgroups())
        print([l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1])
    """)
    uid, gid, groups, caps = r.stdout.split(maxsplit=3)
    assert int(uid) >= BASE_UID and uid == gid and groups == "[]" and int(caps.split()[0], 16) == 0


def test_large_stdin_and_uncapped_normal_output():
    data = "x" * 300_000
    r = run("import sys\nd = sys.stdin.read()\nprint(len(d))", stdin=data)
    assert r.ok and r.stdout == "300000\n"


def test_pool_runs_in_parallel_and_keeps_order():
    with SandboxPool(workers=4) as pool:
        results = pool.map([("import time,sys\ntime.sleep(0.5)\nprint(sys.stdin.read())", str(i)) for i in range(8)])
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(8)]


# ---- limits proven with bounded programs before any unbounded one ----

BOUNDED_FORKS = """
    import os, time
    made = 0
    for _ in range(200):
        try:
            pid = os.fork()
        except OSError:
            continue
        if pid == 0:
            time.sleep(5)
            os._exit(0)
        made += 1
    print(made)
"""


def test_bounded_fork_loop_is_capped():
    r = run(BOUNDED_FORKS, max_processes=8)
    assert r.ok and 0 < int(r.stdout) < 8


def test_process_cap_holds_from_rlimit_alone_without_cgroups(monkeypatch):
    from contextlib import contextmanager

    @contextmanager
    def no_cgroups(*args):
        yield []
    monkeypatch.setattr(runner, "sandbox_cgroups", no_cgroups)
    r = run(BOUNDED_FORKS, max_processes=8)
    assert r.ok and 0 < int(r.stdout) < 8  # RLIMIT_NPROC on the dropped uid: root would ignore it


# ---- the hostile suite ----

def test_fork_bomb():
    start = time.monotonic()
    r = run("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """, timeout=2)
    assert not r.ok and r.timed_out and time.monotonic() - start < 10


def test_infinite_loop():
    r = run("while True:\n    pass", timeout=1)
    assert not r.ok and r.timed_out and r.wall_time_s < 3


def test_ten_gigabyte_allocation():
    r = run("x = bytearray(10 * 1024 ** 3)\nprint('allocated')")
    assert not r.ok and "allocated" not in r.stdout and "MemoryError" in r.stderr


MEMORY_SPREAD = """
    import os, time
    kids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            block = b"x" * (100 * 1024 * 1024)  # filled, so the pages are really used
            time.sleep(0.5)
            os._exit(0)
        kids.append(pid)
    print(sum(os.waitstatus_to_exitcode(os.waitpid(k, 0)[1]) == 0 for k in kids))
"""


@pytest.mark.skipif(not cgroup_available("memory"), reason="no writable memory cgroup: rlimits alone apply")
def test_memory_spread_over_processes_is_bounded():
    # Each child stays under the per-process address-space limit; the memory cgroup caps their sum.
    assert run(MEMORY_SPREAD, memory_mb=1000).stdout == "4\n"  # room for all: the program itself works
    limited = run(MEMORY_SPREAD, memory_mb=250)
    assert limited.ok and int(limited.stdout) < 4


@pytest.mark.parametrize("network_namespace", [True, False])
def test_connecting_to_a_listener_on_localhost(network_namespace):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    port = server.getsockname()[1]
    try:
        r = run(f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
            s.sendall(b"escaped")
            print("connected")
        """, network_namespace=network_namespace)
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()
    assert not r.ok and "connected" not in r.stdout


def test_unix_sockets_still_work():
    r = run("import socket\na, b = socket.socketpair()\na.sendall(b'hi')\nprint(b.recv(2).decode())")
    assert r.ok and r.stdout == "hi\n"


def test_writes_outside_the_working_directory_change_nothing():
    name = f"r1lab-escape-{uuid.uuid4().hex}"
    targets = [Path.home() / name, Path("/tmp") / name, Path("/var/tmp") / name, Path("/dev/shm") / name,
               Path(__file__).resolve().parent / name]
    r = run(f"""
        import os
        for path in {[str(t) for t in targets]!r} + [os.path.expanduser("~/{name}")]:
            try:
                with open(path, "w") as fh:
                    fh.write("escaped")
                print("wrote", path)
            except OSError as err:
                print("refused", path, err.errno)
        open("inside.txt", "w").write("fine")
        print(open("inside.txt").read())
    """)
    assert r.ok and "fine" in r.stdout
    assert [t for t in targets if t.exists()] == []


def test_working_directory_is_fresh_each_run():
    first = run("open('left.txt', 'w').write('x')\nimport os\nprint(sorted(os.listdir('.')))")
    second = run("import os\nprint(sorted(os.listdir('.')))")
    assert "left.txt" in first.stdout and second.stdout == "['main.py']\n"


def test_parent_environment_is_not_visible(monkeypatch):
    secret = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("R1LAB_TEST_SECRET", secret)
    r = run(f"""
        import os
        print(os.environ.get("R1LAB_TEST_SECRET"))
        for pid in ({os.getpid()}, {os.getppid()}, 1, os.getppid()):
            try:
                print(open(f"/proc/{{pid}}/environ", "rb").read())
            except OSError:
                pass
    """)
    assert secret not in r.stdout and secret not in r.stderr


def test_killing_the_parent():
    me = os.getpid()
    r = run(f"""
        import os, signal
        for pid in ({me}, os.getppid(), 1, -1):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        print("still here")
    """)
    assert os.getpid() == me  # the test process survived to make this assertion
    assert r.stdout in ("", "still here\n")


def test_printing_a_gigabyte_is_cut_off():
    start = time.monotonic()
    r = run("import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)",
            max_output_bytes=1 << 20, timeout=20)
    assert not r.ok and r.output_truncated and len(r.stdout) == 1 << 20
    assert time.monotonic() - start < 10


def test_deep_recursion():
    # Python 3.11+ keeps Python frames off the C stack: this ends in MemoryError, a crash or the time limit.
    r = run("import sys\nsys.setrecursionlimit(10 ** 8)\ndef f(n):\n    return f(n + 1)\nf(0)", timeout=3)
    assert not r.ok and r.wall_time_s < 6


def test_daemonised_child_sleeping_forever_is_killed():
    start = time.monotonic()
    r = run("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.close(1); os.close(2)
                time.sleep(10 ** 6)
            os._exit(0)
        print("parent done")
    """, timeout=5)
    assert r.ok and r.stdout == "parent done\n" and time.monotonic() - start < 4
    # the autouse fixture checks that the sleeper is gone


def test_setup_error_is_reported_clearly(monkeypatch):
    monkeypatch.setattr(runner, "_interpreter", lambda: ("/nonexistent/python", "/nonexistent"))
    with pytest.raises(runner.SandboxError, match="sandbox setup failed"):
        run("print(1)")


def test_limits_are_validated_by_field_name():
    with pytest.raises(TypeError):
        run_python("print(1)", no_such_limit=3)
    assert Limits().max_processes > 1


def test_devices_and_subprocesses_still_work():
    r = run("""
        import subprocess
        open("/dev/null", "w").write("discarded")
        print(subprocess.run(["echo", "child"], capture_output=True, text=True).stdout.strip())
    """)
    assert r.ok and r.stdout == "child\n"


def test_concurrent_runs_get_distinct_uids():
    with SandboxPool(workers=4) as pool:
        results = pool.map([("import os, time\ntime.sleep(0.5)\nprint(os.getuid())", "")] * 4)
    assert len({r.stdout for r in results}) == 4


def test_own_network_namespace_has_only_loopback():
    r = run("print(sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))")
    assert r.ok and r.stdout == "['lo']\n"
    host = sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:])
    assert host != ["lo"]  # otherwise this test could not tell the namespaces apart


def test_stray_check_sees_an_unleased_sandbox_uid_process():
    # The autouse fixture relies on this check; show that it can fail.
    from r1lab.sandbox.leases import MAX_SLOTS

    sleeper = subprocess.Popen(["sleep", "30"], user=BASE_UID + MAX_SLOTS - 1, group=BASE_UID + MAX_SLOTS - 1)
    try:
        deadline = time.monotonic() + 5
        while sleeper.pid not in stray_processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sleeper.pid in stray_processes()
    finally:
        sleeper.kill()
        sleeper.wait()
