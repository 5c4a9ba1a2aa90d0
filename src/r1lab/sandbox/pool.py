"""Many sandboxed runs in parallel. Each run leases its own uid, so limits never mix between runs."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from r1lab.sandbox.runner import Limits, SandboxResult, run_files


class SandboxPool:
    """Threads only wait on child processes here, so `workers` is the number of programs running at once."""

    def __init__(self, workers: int = 4):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox")

    def submit(self, code: str, stdin: str = "", limits: Limits = Limits()):
        """A future of the SandboxResult of one program."""
        return self._executor.submit(run_files, {"main.py": code}, stdin, limits)

    def map(self, jobs: Iterable[tuple[str, str]], limits: Limits = Limits()) -> list[SandboxResult]:
        """Run (code, stdin) pairs; results in input order."""
        futures = [self.submit(code, stdin, limits) for code, stdin in jobs]
        return [f.result() for f in futures]

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
