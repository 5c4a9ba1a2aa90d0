"""One choice's tokens -> OpenAI deltas: detokenize, split at `</think>`, cut the answer at stops, count."""
from __future__ import annotations

from r1lab.serve.detokenize import IncrementalDetokenizer
from r1lab.serve.protocol import logprob_entry
from r1lab.serve.reasoning import Channel, ReasoningSplitter, StopCutter

FINISH_REASONS = {"stop": "stop", "length": "length", "cancelled": "stop"}  # engine -> OpenAI


class ChoiceText:
    """Consumes one row's tokens in order; `stopped` turns True when a stop string ends the answer.

    `stop` strings cut only the answer (`content`), never the chain of thought: a stop like "\\n"
    would otherwise end a reasoning model's output in its first line of thinking.
    """

    def __init__(self, tokenizer, stop: list[str], logprobs: bool = False) -> None:
        self._tokenizer = tokenizer
        self._detokenizer = IncrementalDetokenizer(tokenizer)
        self._splitter = ReasoningSplitter()
        self._stop = StopCutter(stop)
        self.completion_tokens = 0
        self.reasoning_tokens = 0  # tokens up to and including the one that closed the think block
        self.finish_reason: str | None = None
        self.reasoning: list[str] = []
        self.content: list[str] | None = None  # None until `</think>` arrives
        # one OpenAI logprob entry per counted token (reasoning and answer), when asked for
        self.logprobs: list[dict] | None = [] if logprobs else None
        self._logprobs_sent = 0

    @property
    def stopped(self) -> bool:
        return self._stop.stopped

    def on_token(self, token_id: int, logprob: float | None = None) -> list[tuple[Channel, str]]:
        if self.finish_reason is not None:
            return []  # tokens decoded after a stop string, before the row noticed its cancellation
        was_reasoning = not self._splitter.in_content
        self.completion_tokens += 1
        if self.logprobs is not None and logprob is not None:
            self.logprobs.append(logprob_entry(self._tokenizer.decode([token_id]), logprob))
        deltas = self._route(self._splitter.feed(self._detokenizer.push(token_id)))
        if was_reasoning:
            self.reasoning_tokens = self.completion_tokens
        if self._stop.stopped:
            self.finish_reason = "stop"
        return deltas

    def new_logprobs(self) -> list[dict] | None:
        """The entries not handed out yet (for the next stream chunk); None when not asked for."""
        if self.logprobs is None:
            return None
        fresh, self._logprobs_sent = self.logprobs[self._logprobs_sent:], len(self.logprobs)
        return fresh

    def on_finish(self, reason: str) -> list[tuple[Channel, str]]:
        if self.finish_reason is not None:
            return []
        self.finish_reason = FINISH_REASONS[reason]
        pieces = self._splitter.feed(self._detokenizer.finish()) + self._splitter.finish()
        deltas = self._route(pieces)
        tail = self._stop.finish()
        if tail:
            deltas += self._record([("content", tail)])
        return deltas

    def _route(self, pieces: list[tuple[Channel, str]]) -> list[tuple[Channel, str]]:
        if self._splitter.in_content and self.content is None:
            self.content = []  # the think block closed: the answer is "" even if nothing follows
        routed: list[tuple[Channel, str]] = []
        for channel, text in pieces:
            if channel == "content":
                text = self._stop.feed(text)
            if text:
                routed.append((channel, text))
        return self._record(routed)

    def _record(self, deltas: list[tuple[Channel, str]]) -> list[tuple[Channel, str]]:
        for channel, text in deltas:
            (self.reasoning if channel == "reasoning" else self.content).append(text)
        return deltas
