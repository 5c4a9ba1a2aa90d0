"""Split a reasoning model's output at `</think>`: the chain of thought before it, the answer after.

The rule is vLLM's `deepseek_r1` parser's: everything before `</think>` is reasoning (a leading
`<think>` is dropped, since the model may write it itself when the server does not prefill it),
everything after is the answer, and an output that never closes its think block is all reasoning
with no answer (`content` null). The answer's leading whitespace is dropped: models put a blank
line after `</think>` that no client wants to render.

`split_reasoning` is the reference for whole texts; `ReasoningSplitter` gives the same split for
text that arrives in arbitrary pieces (a tag may be cut across tokens), which is what streaming needs.
"""
from __future__ import annotations

from typing import Literal

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

Channel = Literal["reasoning", "content"]


def split_reasoning(text: str) -> tuple[str, str | None]:
    """Whole output -> (reasoning, content); content is None when `</think>` never comes."""
    body = text
    if body.lstrip().startswith(THINK_OPEN):
        body = body.lstrip()[len(THINK_OPEN):]
    reasoning, closed, content = body.partition(THINK_CLOSE)
    return reasoning, content.lstrip() if closed else None


def _held_back(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag` (it may still become one)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


class ReasoningSplitter:
    """Incremental `split_reasoning`: feed text pieces, get (channel, text) deltas in order.

    Concatenating the reasoning deltas (and the content deltas) of any chunking of a text gives
    exactly `split_reasoning(text)`. Text that might be the start of a tag is held back until the
    next piece decides it, so a delta never shows half a tag.
    """

    def __init__(self) -> None:
        self._pending = ""
        self._phase: Literal["start", "reasoning", "content"] = "start"
        self._content_started = False

    @property
    def in_content(self) -> bool:
        """True once `</think>` has been seen."""
        return self._phase == "content"

    def feed(self, piece: str) -> list[tuple[Channel, str]]:
        text, self._pending = self._pending + piece, ""
        out: list[tuple[Channel, str]] = []
        if self._phase == "start":
            stripped = text.lstrip()
            if len(stripped) < len(THINK_OPEN) and THINK_OPEN.startswith(stripped):
                self._pending = text  # could still be (whitespace and) an opening tag
                return out
            if stripped.startswith(THINK_OPEN):
                text = stripped[len(THINK_OPEN):]
            self._phase = "reasoning"
        if self._phase == "reasoning":
            before, closed, after = text.partition(THINK_CLOSE)
            if not closed:
                keep = _held_back(text, THINK_CLOSE)
                self._pending = text[len(text) - keep:] if keep else ""
                if len(text) - keep:
                    out.append(("reasoning", text[:len(text) - keep]))
                return out
            if before:
                out.append(("reasoning", before))
            self._phase, text = "content", after
        if not self._content_started:
            text = text.lstrip()
            self._content_started = bool(text)
        if text:
            out.append(("content", text))
        return out

    def finish(self) -> list[tuple[Channel, str]]:
        """Flush held-back text: at the end it is plain reasoning (a tag that never completed)."""
        text, self._pending = self._pending, ""
        return [("reasoning", text)] if text else []


class StopCutter:
    """Cuts streamed answer text at the first of the `stop` strings, holding back possible starts of one."""

    def __init__(self, stop: list[str]) -> None:
        self.stop = [s for s in stop if s]
        self._pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        text, self._pending = self._pending + piece, ""
        hits = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.stopped = True
            return text[:min(hits)]
        keep = max((_held_back(text, s) for s in self.stop), default=0)
        self._pending = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def finish(self) -> str:
        text, self._pending = self._pending, ""
        return "" if self.stopped else text
