"""Math-check worker process: JSON lines `[predicted, gold]` on stdin, `1` or `0` per line on stdout.

Started by `r1lab.rewards.math` with `python -m`, so it never re-imports the caller's main module
(multiprocessing's spawn does, and fails for stdin scripts and some notebooks).
"""
import json
import os
import sys

from r1lab.rewards.math import equivalent, quiet_math_verify


def die_with_parent() -> None:
    """A check stuck in bignum arithmetic never reads stdin's EOF: let the kernel end us with the caller."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass  # not Linux: a stuck worker outlives its caller until the check ends


def main() -> None:
    parent = os.getppid()
    die_with_parent()
    if os.getppid() != parent:  # the caller died before the line above took effect
        return
    quiet_math_verify()
    import math_verify  # noqa: F401  (the slow import happens before "ready", outside any check's deadline)

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        predicted, gold = json.loads(line)
        try:
            verdict = equivalent(predicted, gold)
        except Exception:  # a malformed answer is a wrong answer, not a dead worker
            verdict = False
        sys.stdout.write("1\n" if verdict else "0\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
