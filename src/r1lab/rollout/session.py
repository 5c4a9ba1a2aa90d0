"""The step API: a running batch that rows join and leave between forward steps (continuous batching).

    session = engine.session()
    session.add(Row(prompt_ids, SamplingParams(max_new_tokens=64), seed=1, on_token=print))
    while session.has_work:
        session.step()          # rows may be added or cancelled between any two steps

Each `step()` is one forward pass: rows cancelled since the last step leave first; then, if rows are
waiting and slots are free, the newcomers are prefilled together (and sample their first token)
while the running rows wait one step; otherwise every running row decodes one token. Rows that
finished leave at the end of the step. `NativeEngine.generate` is this loop with all prompts added
up front, so the batch API and the step API are one implementation.

A session is driven by one thread; only `Row.cancel()` may be called from others.
"""
from __future__ import annotations

from typing import Protocol

from r1lab.rollout.scheduler import Row, Scheduler, SlotMove


class ModelRunner(Protocol):
    """The compute half: the KV cache and one forward step for rows that sit in cache slots."""

    def check_length(self, total_len: int) -> None:
        """Raise ValueError if a row of prompt + max_new_tokens = total_len can never run."""

    def reserve(self, num_slots: int, max_len: int) -> None:
        """Make the cache hold at least num_slots rows of max_len positions (keeping its contents)."""

    def prefill(self, rows: list[Row], first_slot: int) -> tuple[list[int], list[float] | None]:
        """Prefill rows into slots first_slot, first_slot + 1, ...; returns each row's first token
        (sampled with the row's own params and generator) and log-probs (None if no row asks)."""

    def decode(self, rows: list[Row]) -> tuple[list[int], list[float] | None]:
        """One token for rows[s], which sits in slot s, for every s."""

    def move(self, move: SlotMove) -> None:
        """Carry out a compaction planned by the scheduler."""


class SteppingEngine(Protocol):
    """What a server needs from an engine that offers the step API (the native engine does)."""

    max_batch_size: int
    context_length: int
    eos_ids: set[int]

    def session(self) -> Session: ...


class Session:
    def __init__(self, scheduler: Scheduler, runner: ModelRunner) -> None:
        self.scheduler, self.runner = scheduler, runner

    @property
    def free_slots(self) -> int:
        """Rows that can be added now and be admitted at the next step."""
        return self.scheduler.free_slots

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    def add(self, row: Row) -> None:
        """Queue a row; it is admitted at the next step that has a free slot for it."""
        if not row.prompt:
            raise ValueError("every prompt needs at least one token")
        self.runner.check_length(row.max_length)
        self.scheduler.add(row)

    def step(self) -> list[Row]:
        """One forward pass (see the module docstring). Returns the rows that left the batch."""
        finished = self._retire()  # cancelled since the last step: they cost no more compute
        new = self.scheduler.admit()
        running = self.scheduler.running
        if new:
            self.runner.reserve(len(running), max(r.max_length for r in new))
            self._record(new, *self.runner.prefill(new, first_slot=len(running) - len(new)))
        elif running:
            self._record(running, *self.runner.decode(running))
        return finished + self._retire()

    def run(self) -> None:
        """Step until every added row has finished."""
        while self.has_work:
            self.step()

    def _record(self, rows: list[Row], tokens: list[int], logprobs: list[float] | None) -> None:
        self.scheduler.record(rows, tokens, logprobs)
        for row, token in zip(rows, tokens):
            if row.on_token is not None:
                row.on_token(token)

    def _retire(self) -> list[Row]:
        finished, move = self.scheduler.retire()
        if move is not None:
            self.runner.move(move)
        for row in finished:
            if row.on_finish is not None:
                row.on_finish(row.finish_reason)
        return finished
