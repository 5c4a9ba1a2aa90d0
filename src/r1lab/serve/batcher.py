"""The request queue in front of the decoder: one worker thread, a bounded wait list, batching.

Requests (each a group of rows: one per choice) wait in a bounded list; the worker takes as many
as fit in the decoder's batch, after a short window so requests sent together start together, and
the decoder pulls more in between its steps as rows finish. A full list refuses new requests
(`QueueFull`, answered 429) instead of letting latency grow without bound.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque

from r1lab.serve.decode import Decoder, Row

log = logging.getLogger(__name__)


class QueueFull(Exception):
    pass


class Batcher:
    def __init__(self, decoder: Decoder, max_waiting: int = 256, window_s: float = 0.01) -> None:
        if max_waiting < 1:
            raise ValueError(f"max_waiting must be >= 1, got {max_waiting}")
        self.decoder, self.max_waiting, self.window_s = decoder, max_waiting, window_s
        self._waiting: deque[list[Row]] = deque()
        self._wakeup = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._running: list[Row] = []  # rows handed to the decoder in the current run

    @property
    def max_rows(self) -> int:
        return self.decoder.max_rows

    @property
    def waiting(self) -> int:
        with self._wakeup:
            return len(self._waiting)

    def submit(self, rows: list[Row]) -> None:
        if not 1 <= len(rows) <= self.max_rows:
            raise ValueError(f"a request needs 1 to {self.max_rows} rows, got {len(rows)}")
        with self._wakeup:
            if self._stopping:
                raise QueueFull("server is shutting down")
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting (limit {self.max_waiting})")
            self._waiting.append(rows)
            self._wakeup.notify()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="r1lab-serve-decode", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel everything waiting or running and wait for the worker to exit."""
        with self._wakeup:
            self._stopping = True
            for row in [r for group in self._waiting for r in group] + self._running:
                row.cancel()
            self._wakeup.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _take(self, free: int) -> list[Row]:
        """Whole requests from the head of the list while they fit in `free` rows (FIFO, no overtaking)."""
        taken: list[Row] = []
        with self._wakeup:
            while self._waiting and len(self._waiting[0]) <= free - len(taken):
                taken += self._waiting.popleft()
            self._running += taken
            if self._stopping:
                for row in taken:
                    row.cancel()
        return taken

    def _work(self) -> None:
        while True:
            with self._wakeup:
                while not self._waiting and not self._stopping:
                    self._wakeup.wait()
                if self._stopping and not self._waiting:
                    return
            time.sleep(self.window_s)  # let requests sent at the same moment share the first prefill
            rows = self._take(self.max_rows)
            try:
                self.decoder.run(rows, self._take)
            except Exception:  # a model failure must fail its requests, not kill the server
                log.exception("decode failed")
            with self._wakeup:
                running, self._running = self._running, []
            for row in running:
                row.finish("error")  # no-op for rows that finished normally
