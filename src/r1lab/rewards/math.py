"""Math answer equivalence: math-verify (LaTeX → sympy) behind a per-check deadline, plus guards.

math-verify's own timeout uses SIGALRM, which fails outside the main thread (rewards run in
threads), so it is disabled and every check runs in a worker process that is killed at the
deadline. Guards (`math_guards`) veto upstream false positives on numbers and equations.
Argument order matters upstream: the gold answer goes first.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import re
import select
import subprocess
import sys
import threading
import time

from r1lab.rewards.extract import extract_answer
from r1lab.rewards.math_guards import decimal_comma_as_point, guard_allows, join_spaced_thousands

DEFAULT_TIMEOUT_S = 5.0
_STARTUP_TIMEOUT_S = 120.0
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def _wrap(answer: str) -> str:
    """Delimit a bare answer as LaTeX math: undelimited, math-verify reads `x - y = 0` as the number 0."""
    answer = join_spaced_thousands(answer.strip())
    return answer if _UNESCAPED_DOLLAR.search(answer) or "\\boxed" in answer else f"${answer}$"


def quiet_math_verify() -> None:
    # "Timeout is disabled" is logged once per process; we enforce our own deadline on purpose.
    for name in ("math_verify", "math_verify.grader", "math_verify.parser"):
        logging.getLogger(name).setLevel(logging.ERROR)


def equivalent(predicted: str, gold: str) -> bool:
    """The check itself, in this process and with no deadline: use `verify_answer` from rewards."""
    from math_verify import parse, verify as mv_verify

    quiet_math_verify()
    predicted, gold = decimal_comma_as_point(predicted, gold), decimal_comma_as_point(gold, predicted)
    gold_parsed = parse(_wrap(gold), parsing_timeout=None)
    pred_parsed = parse(_wrap(predicted), parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return False
    if not mv_verify(gold_parsed, pred_parsed, timeout_seconds=None):
        return False
    # parse() returns [sympy object, source string]; the guards look at the sympy objects.
    return guard_allows(gold_parsed[0], pred_parsed[0])


class _Spawner:
    """Starts worker processes from one thread that lives as long as this process.

    Workers ask the kernel to kill them when their parent dies (PR_SET_PDEATHSIG), and "parent" there
    means the *thread* that started them: a worker started from a short-lived reward thread would be
    killed when that thread ends.
    """

    def __init__(self):
        self._requests: queue.Queue = queue.Queue()
        threading.Thread(target=self._serve, daemon=True, name="r1lab-math-spawner").start()

    def _serve(self) -> None:
        while True:
            args, reply = self._requests.get()
            try:
                reply.put(subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE))
            except BaseException as err:  # noqa: BLE001 (handed to the caller, raised there)
                reply.put(err)

    def popen(self, args: list[str]) -> subprocess.Popen:
        reply: queue.Queue = queue.Queue(maxsize=1)
        self._requests.put((args, reply))
        result = reply.get()
        if isinstance(result, BaseException):
            raise result
        return result


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def _spawn_worker_process() -> subprocess.Popen:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
    return _spawner.popen([sys.executable, "-m", "r1lab.rewards._math_worker"])


class _Worker:
    """One `python -m r1lab.rewards._math_worker` process, answering one check at a time."""

    def __init__(self):
        self.process = _spawn_worker_process()
        # Importing sympy takes seconds on a loaded machine; that must not eat the first check's deadline.
        if self._read_line(_STARTUP_TIMEOUT_S) != b"ready":
            self.kill()
            raise RuntimeError(f"math worker did not start within {_STARTUP_TIMEOUT_S:.0f}s")

    def _read_line(self, timeout: float) -> bytes | None:
        """One reply line, or None at the deadline. Replies are one short line per request: no buffering needed."""
        fd, reply, deadline = self.process.stdout.fileno(), b"", time.monotonic() + timeout
        while not reply.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 64)
            if not chunk:
                raise EOFError(f"math worker exited with code {self.process.wait()}")
            reply += chunk
        return reply.strip()

    def check(self, predicted: str, gold: str, timeout: float) -> bool | None:
        """The verdict, or None if the deadline passed (the worker is then dead and must be dropped)."""
        self.process.stdin.write(json.dumps([predicted, gold]).encode() + b"\n")
        self.process.stdin.flush()
        reply = self._read_line(timeout)
        if reply is None:
            self.kill()
            return None
        return reply == b"1"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except BrokenPipeError:  # unflushed request to a dead worker
                pass


class MathVerifierPool:
    """Worker processes shared by all threads; a check that overruns its deadline costs its worker."""

    def __init__(self, max_workers: int = 2):
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._slots = threading.Semaphore(max_workers)
        self.timeouts = 0  # checks abandoned at the deadline (each scored 0)

    def check(self, predicted: str, gold: str, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
        with self._slots:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                worker = _Worker()
            try:
                verdict = worker.check(predicted, gold, timeout)
            except (OSError, EOFError):  # the worker died (e.g. out of memory): replace it
                worker.kill()
                raise
            if verdict is None:
                self.timeouts += 1
                raise TimeoutError(f"math check exceeded {timeout}s: {predicted[:80]!r} vs {gold[:80]!r}")
            self._idle.put(worker)
            return verdict


_pool: MathVerifierPool | None = None
_pool_lock = threading.Lock()


def verifier_pool() -> MathVerifierPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = MathVerifierPool()
        return _pool


def verify_answer(predicted: str, gold: str, timeout: float = DEFAULT_TIMEOUT_S) -> float:
    """1.0 if `predicted` is mathematically equivalent to `gold`; raises TimeoutError past `timeout`.

    The timeout propagates on purpose: `score_batch` scores it 0 and counts it as a failure.
    """
    return float(verifier_pool().check(predicted, gold, timeout))


def verify(completion: str, answer: str, timeout: float = DEFAULT_TIMEOUT_S) -> float:
    """Score a whole reply against a gold answer: extract its final answer, then compare."""
    predicted = extract_answer(completion, fallback_last_number=True, include_code=False)
    return verify_answer(predicted, answer, timeout) if predicted is not None else 0.0
