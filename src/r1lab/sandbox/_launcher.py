"""The sandbox launcher: runs as root, builds the isolation, then execs the untrusted program unprivileged.

Started by `r1lab.sandbox.runner` as `python -I -S _launcher.py CONFIG_FD STATUS_FD` in a new session.
Standard library only (it must start fast and must not import r1lab). Three processes:

  launcher (root, host pid namespace)  unshare(mount, net, pid, ipc, uts); mounts; forks →
  init     (root, pid 1 of the new pid namespace)  mounts its /proc; forks, waits, exits →
  program  (uid 60000+slot, no capabilities, rlimits, seccomp)  execs python on main.py

When init exits the kernel kills every process left in the namespace, so a daemonised or
setsid'ed grandchild cannot outlive the program. Setup errors go to STATUS_FD (close-on-exec, so
the parent reads EOF with no bytes when the program started) and exit with code 125.
"""
import ctypes
import json
import os
import resource
import signal
import struct
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
SYS_MOUNT_SETATTR = 442  # same number on every architecture (new unified syscall table)
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 1, 38, 22, 2
SETUP_FAILED = 125
# (audit arch, socket syscall number) for the seccomp filter that refuses non-Unix sockets.
SECCOMP_ARCH = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}

libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    pass


def check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(errno)} (errno {errno})")


def mount(source, target, fstype, flags, data=None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def make_tree_read_only(path: str) -> None:
    """Every mount under `path` read-only and nosuid, in this mount namespace only.

    Not nodev: /dev/null and /dev/urandom must stay usable; only world-accessible nodes are.
    """
    attr = struct.pack("QQQQ", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    buf = ctypes.create_string_buffer(attr, len(attr))
    check(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE, buf, len(attr)),
          f"mount_setattr {path} read-only")


def first_closed_ancestor(path: str) -> str | None:
    """The highest directory above `path` that other users cannot traverse (e.g. /root, mode 0700)."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        ancestor = "/" + "/".join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def expose_interpreter(prefix: str) -> None:
    """Let the unprivileged program reach the interpreter when it lives under a closed home (pyenv in /root).

    The closed directory is covered by an empty read-only tmpfs holding only a bind of `prefix`, so
    the program sees the interpreter and nothing else of that home.
    """
    closed = first_closed_ancestor(prefix)
    if closed is None:
        return
    handle = os.open(prefix, os.O_PATH)  # keeps the real directory reachable once it is covered
    mount("tmpfs", closed, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
    os.makedirs(prefix, exist_ok=True)  # inside the new tmpfs
    mount(f"/proc/self/fd/{handle}", prefix, None, MS_BIND | MS_REC)
    mount(None, prefix, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    mount(None, closed, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
    os.close(handle)


def build_filesystem(cfg: dict) -> None:
    """A private mount tree: everything read-only except a fresh size-capped tmpfs at /tmp (the workdir)."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates back to the host
    make_tree_read_only("/")
    uid = cfg["uid"]
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={cfg['tmpfs_bytes']},nr_inodes=4096,mode=0700,uid={uid},gid={uid}")
    expose_interpreter(cfg["python_prefix"])
    for name, content in cfg["files"].items():
        path = os.path.join("/tmp", name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(content)
        os.chown(path, uid, uid)


def refuse_network_sockets() -> None:
    """seccomp: socket() for anything but AF_UNIX fails with EACCES (the no-namespace fallback, and a second wall)."""
    machine = os.uname().machine
    arch = SECCOMP_ARCH.get(machine)
    if arch is None:
        raise SetupError(f"no seccomp socket filter for architecture {machine}")
    audit_arch, socket_nr = arch
    ld, jeq, ret = 0x20, 0x15, 0x06
    deny, allow = 0x00050000 | 13, 0x7FFF0000  # SECCOMP_RET_ERRNO|EACCES, SECCOMP_RET_ALLOW
    program = [
        (ld, 0, 0, 4),                # A = seccomp_data.arch
        (jeq, 0, 4, audit_arch),      # foreign ABI (e.g. 32-bit calls): deny
        (ld, 0, 0, 0),                # A = seccomp_data.nr
        (jeq, 0, 3, socket_nr),       # not socket(): allow
        (ld, 0, 0, 16),               # A = low 32 bits of args[0] (the address family)
        (jeq, 1, 0, 1),               # AF_UNIX: allow
        (ret, 0, 0, deny),
        (ret, 0, 0, allow),
    ]
    filters = b"".join(struct.pack("HBBI", *op) for op in program)
    filter_buf = ctypes.create_string_buffer(filters, len(filters))
    fprog = struct.pack("HxxxxxxP", len(program), ctypes.addressof(filter_buf))
    fprog_buf = ctypes.create_string_buffer(fprog, len(fprog))
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog_buf, 0, 0), "seccomp socket filter")


def set_limits(cfg: dict) -> None:
    cpu = cfg["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (cfg["memory_bytes"], cfg["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (cfg["max_processes"], cfg["max_processes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["tmpfs_bytes"], cfg["tmpfs_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def become_program(cfg: dict) -> None:
    """In the pid namespace: drop to the worker uid and exec the program. Never returns."""
    uid = cfg["uid"]
    os.chdir("/tmp")
    set_limits(cfg)
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")  # setuid binaries cannot regain root
    refuse_network_sockets()
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # clears every capability: root's powers end here
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
    os.execve(cfg["python"], [cfg["python"], "-I", *cfg["argv"]], env)


def run_init(cfg: dict, status_fd: int) -> int:
    """pid 1 of the namespace: mount its /proc, start the program, reap, exit with the program's status."""
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    child = os.fork()
    if child == 0:
        guarded(lambda: become_program(cfg), status_fd)
    os.close(status_fd)
    while True:  # orphans reparent to us; reap them until the program itself ends
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


def guarded(step, status_fd: int) -> None:
    """Run a setup step in a child process; report a failure on the status pipe and exit."""
    try:
        step()
    except BaseException as err:  # noqa: BLE001 (any setup failure must reach the parent, not vanish)
        os.write(status_fd, f"{type(err).__name__}: {err}".encode()[:4000])
        os._exit(SETUP_FAILED)
    os._exit(SETUP_FAILED)  # become_program only returns if exec failed without raising


def main() -> int:
    config_fd, status_fd = int(sys.argv[1]), int(sys.argv[2])
    os.set_inheritable(status_fd, False)  # the program's exec closes it: EOF tells the parent "started"
    try:
        check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")  # parent gone → sandbox gone
        with os.fdopen(config_fd, "rb") as fh:
            cfg = json.loads(fh.read())
        for procs_file in cfg["cgroup_procs"]:
            with open(procs_file, "w") as fh:
                fh.write(str(os.getpid()))
        flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
        # Own network namespace where the kernel allows; the seccomp socket filter holds either way.
        if not (cfg["network_namespace"] and libc.unshare(flags | CLONE_NEWNET) == 0):
            check(libc.unshare(flags), "unshare namespaces")
        build_filesystem(cfg)
    except BaseException as err:  # noqa: BLE001
        os.write(status_fd, f"{type(err).__name__}: {err}".encode()[:4000])
        return SETUP_FAILED
    init = os.fork()
    if init == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        try:
            os._exit(run_init(cfg, status_fd))
        except BaseException as err:  # noqa: BLE001
            os.write(status_fd, f"{type(err).__name__}: {err}".encode()[:4000])
            os._exit(SETUP_FAILED)
    os.close(status_fd)
    _, status = os.waitpid(init, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
