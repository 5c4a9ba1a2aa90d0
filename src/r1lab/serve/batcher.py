"""The request queue in front of the rollout engine: a bounded wait list and one thread stepping a session.

Requests (each a group of rows: one per choice) wait in a bounded list. The worker thread opens an
engine session when work arrives, waits a short window so requests sent together are admitted
together (one prefill, one batch), then steps the session; between any two steps it admits more
waiting requests into the slots that finished or cancelled rows freed. When nothing is left to do
the session is closed (its KV cache freed). A full list refuses new requests (`QueueFull`, answered
429) instead of letting latency grow without bound.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque

from r1lab.rollout.scheduler import Row
from r1lab.rollout.session import Session, SteppingEngine

log = logging.getLogger(__name__)


class QueueFull(Exception):
    pass


class Batcher:
    def __init__(self, engine: SteppingEngine, max_waiting: int = 256, window_s: float = 0.01) -> None:
        if max_waiting < 1:
            raise ValueError(f"max_waiting must be >= 1, got {max_waiting}")
        self.engine, self.max_waiting, self.window_s = engine, max_waiting, window_s
        self._waiting: deque[list[Row]] = deque()
        self._wakeup = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._running: set[Row] = set()  # rows admitted into the open session and not finished yet

    @property
    def max_rows(self) -> int:
        return self.engine.max_batch_size

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
            for row in [r for group in self._waiting for r in group] + list(self._running):
                row.cancel()
            self._wakeup.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _admit(self, session: Session) -> None:
        """Whole requests from the head of the list while they fit in free slots (FIFO, no overtaking)."""
        with self._wakeup:
            while self._waiting and len(self._waiting[0]) <= session.free_slots:
                rows = self._waiting.popleft()
                self._running.update(rows)  # first: if `add` raises, these rows still get their error
                for row in rows:
                    if self._stopping:
                        row.cancel()  # still goes through the session, which reports it cancelled
                    session.add(row)

    def _work(self) -> None:
        while True:
            with self._wakeup:
                while not self._waiting and not self._stopping:
                    self._wakeup.wait()
                if self._stopping and not self._waiting:
                    return
            time.sleep(self.window_s)  # let requests sent at the same moment share the first prefill
            try:
                session = self.engine.session()
                self._admit(session)
                while session.has_work:
                    finished = session.step()
                    with self._wakeup:
                        self._running.difference_update(finished)
                    self._admit(session)
            except Exception:  # a model failure must fail its requests, not kill the server
                log.exception("generation failed")
            with self._wakeup:
                unfinished, self._running = self._running, set()
            for row in unfinished:  # only after a failed step: tell the owners of rows that never finished
                if row.finish_reason is None and row.on_finish is not None:
                    row.on_finish("error")  # the service's callback takes "error" beside the engine's reasons
