"""Shared by the serve tests: a scripted decoder and a real uvicorn server on a free loopback port."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import uvicorn

from r1lab.models import tiny_tokenizer
from r1lab.serve.app import create_app
from r1lab.serve.batcher import Batcher
from r1lab.serve.decode import Row
from r1lab.serve.service import ChatService, ServeConfig

SCRIPT = "Two and two make four.\nCheck: 4 - 2 = 2.</think>\n\nThe answer is 4."


class ScriptedDecoder:
    """Emits a fixed text token by token for every row, with the real decoder's finishing rules
    (max_new_tokens -> "length", end of script -> "eos", cancellation -> dropped at the next step)."""

    def __init__(self, tokenizer, script: str = SCRIPT, step_s: float = 0.0, max_rows: int = 64,
                 context_length: int = 2048, pause_at: int | None = None) -> None:
        self.script = tokenizer(script, add_special_tokens=False)["input_ids"]
        self.pause_at = pause_at  # after this many tokens, wait until `resume` is set
        self.resume = threading.Event()
        self.step_s, self.max_rows, self.context_length = step_s, max_rows, context_length
        self.first_step_sizes: list[int] = []  # rows decoded together in each run's first step
        self.cancelled_after: list[int] = []  # tokens a cancelled row had produced
        self.steps = 0
        self.max_live = 0  # most rows decoded in one step

    def run(self, rows: list[Row], admit) -> None:
        live = list(rows)
        self.first_step_sizes.append(len(live))
        while live:
            time.sleep(self.step_s)
            if self.pause_at is not None and any(r.generated == self.pause_at for r in live):
                self.resume.wait(timeout=60)
            self.steps += 1
            self.max_live = max(self.max_live, len(live))
            for row in list(live):
                if row.cancelled.is_set():
                    self.cancelled_after.append(row.generated)
                    row.finish("cancelled")
                elif row.generated == len(self.script):
                    row.finish("eos")
                else:
                    row.on_token(self.script[row.generated])
                    row.generated += 1
                    if row.generated >= row.params.max_new_tokens:
                        row.finish("length")
                if row.done:
                    live.remove(row)
            live += admit(self.max_rows - len(live))


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def scripted_service(api_key: str | None = None, max_waiting: int = 256, **decoder_options) -> ChatService:
    tokenizer = tiny_tokenizer()
    decoder = ScriptedDecoder(tokenizer, **decoder_options)
    return ChatService(tokenizer, Batcher(decoder, max_waiting=max_waiting),
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
