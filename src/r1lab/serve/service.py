"""What one chat request becomes: a prompt, n engine rows, and a stream of per-choice deltas."""
from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from functools import partial
from typing import AsyncIterator

from r1lab.rollout.base import SamplingParams
from r1lab.rollout.scheduler import Row
from r1lab.serve.batcher import Batcher, QueueFull
from r1lab.serve.body import DEFAULT_MAX_BODY_BYTES
from r1lab.serve.choices import ChoiceText
from r1lab.serve.errors import ApiError, bad_param
from r1lab.serve.protocol import ChatRequest
from r1lab.serve.reasoning import Channel

THINK_PREFILL = "<think>\n"


@dataclass
class ServeConfig:
    served_model_name: str
    api_key: str | None = None  # None: no auth
    think_prefill: bool = True  # open every reply with "<think>\n" so the model does not skip thinking
    default_max_tokens: int = 1024  # when a request sets no max_tokens (bounded by the context)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # larger request bodies get 413


class ChatService:
    """Owns the tokenizer and the batcher; turns validated requests into running jobs."""

    def __init__(self, tokenizer, batcher: Batcher, config: ServeConfig) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template; serve a chat/instruct checkpoint "
                             "or save one with tokenizer.chat_template set")
        self.tokenizer, self.batcher, self.config = tokenizer, batcher, config

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # R1-distill templates open the think block themselves
        if self.config.think_prefill and not text.rstrip().endswith(THINK_PREFILL.strip()):
            text += THINK_PREFILL
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def max_new_tokens(self, request: ChatRequest, prompt_len: int) -> int:
        room = self.batcher.engine.context_length - prompt_len
        asked = request.max_tokens if request.max_tokens is not None else min(self.config.default_max_tokens, room)
        if room < 1 or asked > room:
            raise ApiError(400, f"this model's maximum context length is {self.batcher.engine.context_length} "
                                f"tokens; the messages take {prompt_len} and max_tokens asks for {asked}",
                           param="messages", code="context_length_exceeded")
        return asked

    def check(self, request: ChatRequest) -> None:
        """What can be refused before the (slow, off-loop) tokenizing."""
        if request.model != self.config.served_model_name:
            raise ApiError(404, f"the model {request.model!r} does not exist; this server serves "
                                f"{self.config.served_model_name!r}", param="model", code="model_not_found")
        if request.n > self.batcher.max_rows:
            raise bad_param("n", f"n must be <= {self.batcher.max_rows} on this server, got {request.n}")

    def start(self, request: ChatRequest, prompt: list[int] | None = None) -> "ChatJob":
        """Queue the request's rows; `prompt` is `prompt_ids(request.messages)`, computed here if not given.
        Runs on the event loop (the job's events are posted to it)."""
        self.check(request)
        if prompt is None:
            prompt = self.prompt_ids(request.messages)
        # No engine-side stop strings: they would cut the reasoning too; ChoiceText cuts the answer.
        params = SamplingParams(max_new_tokens=self.max_new_tokens(request, len(prompt)),
                                temperature=request.temperature, top_p=request.top_p, logprobs=request.logprobs)
        job = ChatJob(self.tokenizer, request, prompt, params, self.batcher.engine.eos_ids)
        try:
            self.batcher.submit(job.rows)
        except QueueFull as err:
            raise ApiError(429, f"the server is busy: {err}; retry later", code="rate_limit_exceeded",
                           type="rate_limit_error") from err
        return job


def _row_seed(seed: int | None, choice: int) -> int:
    if seed is None:
        return secrets.randbits(63)  # fresh OS entropy: unseeded requests must not repeat each other
    return (seed + choice) % 2**63  # choice i of a seeded request is reproducible


class ChatJob:
    """One request's rows and the asyncio side of their token callbacks."""

    def __init__(self, tokenizer, request: ChatRequest, prompt: list[int], params: SamplingParams,
                 eos_ids: set[int]) -> None:
        self.request, self.prompt_tokens, self._eos_ids = request, len(prompt), eos_ids
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue = asyncio.Queue()
        self.choices = [ChoiceText(tokenizer, request.stop, request.logprobs) for _ in range(request.n)]
        self.rows = [Row(prompt, params, _row_seed(request.seed, i),
                         on_token=partial(self._post, i, "token"), on_finish=partial(self._post, i, "finish"))
                     for i in range(request.n)]

    def _post(self, index: int, kind: str, value) -> None:
        """Called on the engine's thread: hand the event to this request's event loop."""
        if kind == "token":
            if value in self._eos_ids:
                return  # EOS ends the row (its finish follows); it is neither text nor a counted token
            row = self.rows[index]  # its log-prob of this token is recorded before on_token is called
            value = (value, row.logprobs[-1] if row.params.logprobs and row.logprobs else None)
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, (index, kind, value))
        except RuntimeError:  # the event loop is closed (server shutting down): nobody is listening
            self.rows[index].cancel()

    def cancel(self) -> None:
        for row in self.rows:
            row.cancel()

    async def deltas(self) -> AsyncIterator[tuple[int, list[tuple[Channel, str]], str | None]]:
        """Yields (choice index, deltas, finish_reason or None) until every choice has finished.

        Leaving early (client gone, task cancelled) cancels the rows, so their decoding stops.
        """
        open_choices = set(range(len(self.choices)))
        try:
            while open_choices:
                index, kind, value = await self._events.get()
                if index not in open_choices:
                    continue
                choice = self.choices[index]
                if kind == "token":
                    deltas = choice.on_token(*value)
                    if choice.stopped:
                        self.rows[index].cancel()
                elif value == "error":
                    raise ApiError(500, "generation failed on the server; see its log", type="server_error")
                else:
                    deltas = choice.on_finish(value)
                if choice.finish_reason is not None:
                    open_choices.discard(index)
                yield index, deltas, choice.finish_reason
        finally:
            self.cancel()

    def usage_counts(self) -> tuple[int, int]:
        return (sum(c.completion_tokens for c in self.choices), sum(c.reasoning_tokens for c in self.choices))
