"""Shared by the serve tests: a scripted engine and a real uvicorn server on a free loopback port."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import uvicorn

from r1lab.models import tiny_tokenizer
from r1lab.rollout.scheduler import Scheduler
from r1lab.rollout.session import Session
from r1lab.serve.app import create_app
from r1lab.serve.batcher import Batcher
from r1lab.serve.service import ChatService, ServeConfig

SCRIPT = "Two and two make four.\nCheck: 4 - 2 = 2.</think>\n\nThe answer is 4."


class ScriptedEngine:
    """The real step API (scheduler and session) around a scripted compute step: every row "samples"
    the script's next token, then EOS. So admission, cancellation and finishing are the engine's own.
    The k-th token of a row (k = 1, 2, ...) has the log-prob `scripted_logprob(k)`.

    step_s: seconds each forward step takes; pause_at: after a row has this many tokens, steps wait
    until `resume` is set; fail_once_after: the first session's compute raises once a row has this
    many tokens (a model failure mid-generation).
    """

    def __init__(self, tokenizer, script: str = SCRIPT, step_s: float = 0.0, max_rows: int = 64,
                 context_length: int = 2048, pause_at: int | None = None, fail_once_after: int | None = None):
        self.tokenizer = tokenizer
        self.script = tokenizer(script, add_special_tokens=False)["input_ids"]
        self.eos_ids = {tokenizer.eos_token_id}
        self.step_s, self.max_batch_size, self.context_length = step_s, max_rows, context_length
        self.pause_at, self.resume = pause_at, threading.Event()
        self.fail_once_after = fail_once_after
        self.steps = 0
        self.max_live = 0  # most rows in one forward step
        self.prefill_sizes: list[int] = []  # rows admitted together, per prefill step
        self.cancelled_after: list[int] = []  # tokens each cancelled row had produced

    def session(self) -> Session:
        return _RecordingSession(self, Scheduler(self.max_batch_size, self.eos_ids, self.tokenizer),
                                 _ScriptedRunner(self))


class _RecordingSession(Session):
    def __init__(self, engine: ScriptedEngine, scheduler, runner) -> None:
        super().__init__(scheduler, runner)
        self.engine = engine

    def step(self):
        finished = super().step()
        self.engine.cancelled_after += [len(r.tokens) for r in finished if r.finish_reason == "cancelled"]
        return finished


class _ScriptedRunner:
    def __init__(self, engine: ScriptedEngine) -> None:
        self.engine = engine

    def check_length(self, total_len: int) -> None:
        if total_len > self.engine.context_length:
            raise ValueError(f"{total_len} > context length {self.engine.context_length}")

    def reserve(self, num_slots, max_len) -> None:
        pass

    def move(self, move) -> None:
        pass

    def prefill(self, rows, first_slot):
        self.engine.prefill_sizes.append(len(rows))
        return self.decode(rows)

    def decode(self, rows):
        e = self.engine
        time.sleep(e.step_s)
        if e.pause_at is not None and any(len(r.tokens) == e.pause_at for r in rows):
            e.resume.wait(timeout=60)
        if e.fail_once_after is not None and any(len(r.tokens) == e.fail_once_after for r in rows):
            e.fail_once_after = None
            raise RuntimeError("simulated model failure")
        e.steps += 1
        e.max_live = max(e.max_live, len(rows))
        eos = next(iter(e.eos_ids))
        tokens = [e.script[len(r.tokens)] if len(r.tokens) < len(e.script) else eos for r in rows]
        return tokens, [scripted_logprob(len(r.tokens) + 1) for r in rows]


def scripted_logprob(k: int) -> float:
    return -k / 8


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def scripted_service(api_key: str | None = None, max_waiting: int = 256, **engine_options) -> ChatService:
    tokenizer = tiny_tokenizer()
    engine = ScriptedEngine(tokenizer, **engine_options)
    return ChatService(tokenizer, Batcher(engine, max_waiting=max_waiting),
                       ServeConfig(served_model_name="tiny-r1", api_key=api_key))


@contextmanager
def running_server(service: ChatService):
    """Yields the base URL of a uvicorn server on 127.0.0.1 (free port); always shuts it down."""
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        assert not thread.is_alive(), "test server did not shut down"
