"""The HTTP layer: OpenAI-compatible routes, API-key auth, SSE streaming, errors, and `run_server`."""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from r1lab.serve import protocol
from r1lab.serve.batcher import Batcher
from r1lab.serve.body import DEFAULT_MAX_BODY_BYTES, decode_json, read_body
from r1lab.serve.errors import ApiError, error_body
from r1lab.serve.page import render_chat_page
from r1lab.serve.service import ChatJob, ChatService, ServeConfig

log = logging.getLogger(__name__)


def create_app(service: ChatService) -> FastAPI:
    """The app starts the service's batcher worker on startup and stops it (cancelling work) on shutdown."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        service.batcher.start()
        try:
            yield
        finally:
            service.batcher.stop()

    app = FastAPI(title="r1lab reasoning server", lifespan=lifespan, docs_url=None, redoc_url=None)
    config = service.config
    started = int(time.time())

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, err: ApiError):
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        if err.status_code == 404:
            body = error_body(f"no route {request.url.path!r}: this server has /v1/chat/completions, /v1/models, "
                              "/health and /", type="not_found_error", code="unknown_route")
        elif err.status_code == 405:
            body = error_body(f"{request.method} is not allowed on {request.url.path!r}",
                              type="invalid_request_error", code="method_not_allowed")
        else:
            body = error_body(str(err.detail), type="invalid_request_error")
        return JSONResponse(body, status_code=err.status_code, headers=getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, err: Exception):
        log.exception("unhandled error")
        return JSONResponse(error_body(f"internal server error: {type(err).__name__}", type="server_error"),
                            status_code=500)

    def authorize(request: Request) -> None:
        if config.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), config.api_key.encode()):
            raise ApiError(401, "invalid or missing API key: send the header 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    def model_card() -> dict:
        return {"id": config.served_model_name, "object": "model", "created": started, "owned_by": "r1lab"}

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": config.served_model_name, "waiting_requests": service.batcher.waiting}

    @app.get("/", response_class=HTMLResponse)
    async def chat_page():
        return HTMLResponse(render_chat_page(config.served_model_name, needs_key=config.api_key is not None))

    @app.get("/v1/models")
    async def list_models(request: Request):
        authorize(request)
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request):
        authorize(request)
        if model_id != config.served_model_name:
            raise ApiError(404, f"the model {model_id!r} does not exist", param="model", code="model_not_found")
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        authorize(request)
        raw = await read_body(request, config.max_body_bytes)
        # Decoding and tokenizing a large body take a while: off the loop, so /health and the other
        # requests' streams keep going meanwhile.
        chat = protocol.parse_chat_request(await asyncio.to_thread(decode_json, raw))
        service.check(chat)
        prompt = await asyncio.to_thread(service.prompt_ids, chat.messages)
        job = service.start(chat, prompt)
        if chat.stream:
            return StreamingResponse(_sse(job, config.served_model_name), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await _complete_unless_disconnected(job, request, config.served_model_name)

    return app


async def _collect(job: ChatJob, model: str) -> dict:
    async for _ in job.deltas():
        pass
    completion_tokens, reasoning_tokens = job.usage_counts()
    choices = [protocol.completion_choice(i, "".join(c.reasoning),
                                          "".join(c.content) if c.content is not None else None, c.finish_reason,
                                          c.logprobs)
               for i, c in enumerate(job.choices)]
    return protocol.completion(protocol.completion_id(), model, choices,
                               protocol.usage(job.prompt_tokens, completion_tokens, reasoning_tokens))


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _complete_unless_disconnected(job: ChatJob, request: Request, model: str) -> Response:
    """A non-streaming client that hangs up stops its generation instead of leaving it to run out."""
    work = asyncio.ensure_future(_collect(job, model))
    gone = asyncio.ensure_future(_wait_for_disconnect(request))
    await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    if not work.done():
        work.cancel()
        job.cancel()
        return Response(status_code=499)  # nobody reads it; nginx's "client closed request"
    gone.cancel()
    return JSONResponse(work.result())


def _event(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


async def _sse(job: ChatJob, model: str):
    """OpenAI's chunk stream: a role delta per choice, reasoning deltas, content deltas, a finish chunk,
    an optional usage chunk, then `[DONE]`. Cancellation (client gone) propagates into job.deltas()."""
    cid, created = protocol.completion_id(), int(time.time())
    usage_field = {"usage": None} if job.request.include_usage else {}

    def chunk(choices: list[dict]) -> str:
        return _event({**protocol.chunk(cid, created, model, choices), **usage_field})

    try:
        yield chunk([protocol.chunk_choice(i, {"role": "assistant"}) for i in range(len(job.choices))])
        try:
            async for index, deltas, finish_reason in job.deltas():
                choice = job.choices[index]
                for channel, text in deltas:  # a token's log-prob goes with the first text it shows in
                    delta = protocol.reasoning_fields(text) if channel == "reasoning" else {"content": text}
                    yield chunk([protocol.chunk_choice(index, delta, logprobs=choice.new_logprobs())])
                if finish_reason is not None:  # with the log-probs of tokens that showed no text
                    yield chunk([protocol.chunk_choice(index, {}, finish_reason, choice.new_logprobs())])
        except ApiError as err:  # the status line is already sent: report in-band, as OpenAI does
            yield _event(err.body())
            return
        if job.request.include_usage:
            completion_tokens, reasoning_tokens = job.usage_counts()
            yield _event(protocol.chunk(cid, created, model, [],
                                        protocol.usage(job.prompt_tokens, completion_tokens, reasoning_tokens)))
        yield _event("[DONE]")
    finally:
        job.cancel()  # also covers a client that leaves before the first token


# ---------------------------------------------------------------- the `r1lab serve` entry point
def build_service(model_name: str, *, served_model_name: str | None = None, api_key: str | None = None,
                  think_prefill: bool = True, default_max_tokens: int = 1024, max_batch: int = 64,
                  max_waiting: int = 256, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> ChatService:
    """Load the model onto the native rollout engine (its step API batches the requests); models
    it cannot run (see docs/models.md) raise UnsupportedModelError."""
    from r1lab.models import load_model, load_tokenizer
    from r1lab.rollout.factory import make_engine
    from r1lab.rollout.families import UnsupportedModelError

    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name)
    try:
        engine = make_engine("native", model, tokenizer, max_batch_size=max_batch)  # a fixed model: prepacked
    except UnsupportedModelError as err:
        raise UnsupportedModelError(f"{model_name}: r1lab serve decodes on the native rollout engine, which "
                                    f"runs the decoder families in docs/models.md only: {err}") from err
    name = served_model_name or Path(model_name.rstrip("/")).name
    config = ServeConfig(served_model_name=name, api_key=api_key, think_prefill=think_prefill,
                         default_max_tokens=default_max_tokens, max_body_bytes=max_body_bytes)
    return ChatService(tokenizer, Batcher(engine, max_waiting=max_waiting), config)


def run_server(model: str, host: str = "127.0.0.1", port: int = 8000, threads: int | None = None,
               **service_options) -> None:
    """Load `model` and serve it until interrupted. `service_options` go to `build_service`.

    threads: torch intra-op threads for decoding (None: torch's default, one per core). On a machine
    shared with other jobs fewer threads can be much faster: spinning OpenMP workers wait on busy cores.
    """
    import torch
    import uvicorn

    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    service = build_service(model, **service_options)
    uvicorn.run(create_app(service), host=host, port=port, log_level="info")
