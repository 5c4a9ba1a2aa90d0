"""The scheduling half of the native engine: which rows run, when they join, when they leave.

No model and no cache here. A `Scheduler` holds rows waiting for a cache slot and rows running in
slots 0..n-1 (`running[s]` sits in slot s). Between forward steps it admits waiting rows into free
slots, records each step's sampled tokens and decides which rows are done (EOS, a stop string,
`max_new_tokens`, or cancelled by their owner), then retires them and plans the slot moves that
keep the running rows a prefix of the cache. The compute half (`engine.NativeRunner`) carries out
the forward steps and the moves; `session.Session` connects the two.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch

from r1lab.rollout.base import SamplingParams
from r1lab.rollout.finish import stops_in

# "stop": EOS or a stop string; "length": max_new_tokens reached; "cancelled": `Row.cancel()` was called.
FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(eq=False)
class Row:
    """One prompt being generated: its own sampling parameters, its own RNG, its tokens so far.

    seed: seeds this row's torch.Generator, so its samples do not depend on the rows beside it.
        None draws a seed from torch's global RNG (so torch.manual_seed still makes a run reproducible).
    on_token(token_id): called for every sampled token in order, EOS included (the ids that become
        `Completion.token_ids`); on_finish(reason): called once, when the row leaves the batch.
        Both run on the thread that steps the session and must return quickly.
    """
    prompt: list[int]
    params: SamplingParams
    seed: int | None = None
    on_token: Callable[[int], None] | None = None
    on_finish: Callable[[FinishReason], None] | None = None
    tokens: list[int] = field(default_factory=list, init=False)
    logprobs: list[float] = field(default_factory=list, init=False)  # filled when params.logprobs
    finish_reason: FinishReason | None = field(default=None, init=False)
    cancelled: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.prompt = [int(t) for t in self.prompt]
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(int(self.seed) if self.seed is not None else int(torch.randint(2**62, ())))

    def cancel(self) -> None:
        """Stop this row; safe from any thread. It leaves the batch (freeing its slot) at the next step."""
        self.cancelled = True

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.tokens)

    @property
    def max_length(self) -> int:
        return len(self.prompt) + self.params.max_new_tokens


@dataclass
class SlotMove:
    """Copy the first `width` cache positions of slots `src` into slots `dst` (compaction)."""
    src: list[int]
    dst: list[int]
    width: int


class Scheduler:
    """Admission (first come, first served, into free slots) and retirement of rows; no compute."""

    def __init__(self, num_slots: int, eos_ids: set[int], tokenizer) -> None:
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        self.num_slots, self.eos_ids, self.tokenizer = num_slots, eos_ids, tokenizer
        self.waiting: deque[Row] = deque()
        self.running: list[Row] = []  # running[s] occupies cache slot s
        self._dropped: list[Row] = []  # cancelled while waiting; reported by the next `retire`

    @property
    def free_slots(self) -> int:
        """Slots no running or waiting row will take."""
        return self.num_slots - len(self.running) - len(self.waiting)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self._dropped)

    def add(self, row: Row) -> None:
        self.waiting.append(row)

    def admit(self) -> list[Row]:
        """Move waiting rows into the free slots after the running ones; returns them (to prefill)."""
        new: list[Row] = []
        while self.waiting and len(self.running) + len(new) < self.num_slots:
            row = self.waiting.popleft()
            if row.cancelled:
                row.finish_reason = "cancelled"
                self._dropped.append(row)
            else:
                new.append(row)
        self.running += new
        return new

    def record(self, rows: list[Row], tokens: list[int], logprobs: list[float] | None) -> None:
        """Append one sampled token (and log-prob) to each row and decide whether it is done."""
        for i, row in enumerate(rows):
            row.tokens.append(tokens[i])
            if logprobs is not None and row.params.logprobs:
                row.logprobs.append(logprobs[i])
            row.finish_reason = self._finish_reason(row)

    def _finish_reason(self, row: Row) -> FinishReason | None:
        if row.tokens[-1] in self.eos_ids:
            return "stop"
        stop = row.params.stop
        if stop:
            # Only the tail can hold a stop string that was not there a token ago. A missed stop
            # would only cost compute: finish_completion still cuts the text exactly.
            window = max(len(s) for s in stop) + 1
            if stops_in(self.tokenizer.decode(row.tokens[-window:], skip_special_tokens=True), stop):
                return "stop"
        return "length" if len(row.tokens) >= row.params.max_new_tokens else None

    def retire(self) -> tuple[list[Row], SlotMove | None]:
        """Remove finished and cancelled rows. Survivors from the tail move into the holes so the
        running rows stay a prefix of the slots; the returned move says which cache slots to copy."""
        done, self._dropped = self._dropped, []
        leaving = [s for s, r in enumerate(self.running) if r.finish_reason is not None or r.cancelled]
        if not leaving:
            return done, None
        for s in leaving:
            row = self.running[s]
            row.finish_reason = row.finish_reason or "cancelled"
            done.append(row)
        keep = len(self.running) - len(leaving)
        holes = [s for s in leaving if s < keep]
        gone = set(leaving)
        movers = [s for s in range(keep, len(self.running)) if s not in gone]
        move = None
        if holes:
            move = SlotMove(movers, holes, width=max(self.running[s].length for s in movers))
            for hole, mover in zip(holes, movers):
                self.running[hole] = self.running[mover]
        del self.running[keep:]
        return done, move
