"""The chat-completions request, validated into plain values, and the response/chunk JSON shapes.

Validation is a pure function of the JSON body so every bad-parameter rule is unit-testable; each
failure names the offending field (OpenAI's `param`). Unknown fields are ignored, as OpenAI-
compatible servers do, so clients that send e.g. `frequency_penalty` still work; known OpenAI
features this server does not implement (tools, JSON output, top log-probs) are refused with
`unsupported_parameter` rather than silently ignored.
"""
from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field

from r1lab.serve.errors import ApiError, bad_param

ROLES = ("system", "developer", "user", "assistant")
MAX_STOP_STRINGS = 4  # OpenAI's limit
MAX_CHOICES = 16  # each choice is a decode row; this keeps one request from filling a batch
# R1's usage advice (R1_SYSTEM.md §5): T = 0.6, top-p 0.95; OpenAI's defaults (1.0, 1.0) make R1 ramble.
DEFAULT_TEMPERATURE, DEFAULT_TOP_P = 0.6, 0.95
REASONING_EFFORTS = ("minimal", "low", "medium", "high")


@dataclass
class ChatRequest:
    model: str
    messages: list[dict]  # {"role", "content": str}, ready for the chat template
    max_tokens: int | None = None  # None: the server fills in its default
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    stop: list[str] = field(default_factory=list)
    n: int = 1
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False
    logprobs: bool = False  # the sampled tokens' log-probs in each choice


def _number(body: dict, name: str, default: float, low: float, high: float, *, low_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_param(name, f"{name} must be a number, got {type(value).__name__}", "invalid_type")
    if isinstance(value, float) and not math.isfinite(value):  # 1e999 decodes to inf
        raise bad_param(name, f"{name} must be a finite number, got {value}")
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bracket = "(" if low_open else "["
        raise bad_param(name, f"{name} must be in {bracket}{low}, {high}], got {value}")
    return float(value)


def _integer(body: dict, name: str, low: int, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_param(name, f"{name} must be an integer, got {type(value).__name__}", "invalid_type")
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f">= {low}"
        raise bad_param(name, f"{name} must be {limit}, got {value}")
    return value


def _text_of(content, where: str) -> str:
    """Message content is a string or a list of {"type": "text", "text": ...} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise bad_param(where, f"{where}: only text content parts are supported")
            parts.append(part["text"])
        return "".join(parts)
    raise bad_param(where, f"{where} must be a string or a list of text parts", "invalid_type")


def _messages(raw) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise bad_param("messages", "messages must be a non-empty list", "invalid_type")
    messages = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad_param(where, f"{where} must be an object", "invalid_type")
        role = m.get("role")
        if role not in ROLES:
            raise bad_param(f"{where}.role", f"{where}.role must be one of {list(ROLES)}, got {role!r}")
        for reasoning_field in ("reasoning_content", "reasoning"):
            # DeepSeek's API rule: earlier turns' chain of thought must not be sent back.
            if m.get(reasoning_field) is not None:
                raise bad_param(f"{where}.{reasoning_field}",
                                f"{where}: the {reasoning_field} of earlier assistant turns must not be sent back; "
                                "keep only their content in the chat history", "reasoning_content_in_input")
        content = m.get("content")
        if content is None and role == "assistant":
            content = ""
        messages.append({"role": "system" if role == "developer" else role,
                         "content": _text_of(content, f"{where}.content")})
    return messages


def _stop(raw) -> list[str]:
    if raw is None:
        return []
    stops = [raw] if isinstance(raw, str) else raw
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise bad_param("stop", "stop must be a string or a list of strings", "invalid_type")
    if len(stops) > MAX_STOP_STRINGS:
        raise bad_param("stop", f"stop takes at most {MAX_STOP_STRINGS} strings, got {len(stops)}")
    return [s for s in stops if s]


def _unsupported(param: str, what: str) -> ApiError:
    return bad_param(param, f"{param}: {what} is not supported by this server", "unsupported_parameter")


def _refuse_unsupported(body: dict) -> None:
    """OpenAI features that would change the reply's meaning if ignored: refuse them by name."""
    for name in ("tools", "functions"):
        if body.get(name):  # an empty list asks for nothing
            raise _unsupported(name, "tool/function calling")
    for name in ("tool_choice", "function_call"):
        if body.get(name) not in (None, "none"):
            raise _unsupported(name, "tool/function calling")
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        raise _unsupported("response_format", "structured (JSON) output")


def _logprobs(body: dict) -> bool:
    wanted = body.get("logprobs")
    if wanted is not None and not isinstance(wanted, bool):
        raise bad_param("logprobs", "logprobs must be a boolean", "invalid_type")
    top = _integer(body, "top_logprobs", 0, 20)
    if top is not None and not wanted:
        raise bad_param("top_logprobs", "top_logprobs needs logprobs: true")
    if top:
        raise _unsupported("top_logprobs", "top_logprobs > 0 (the sampler keeps only the chosen token's log-prob)")
    return bool(wanted)


def _check_reasoning_effort(body: dict) -> None:
    """Validated, then ignored (docs/serve.md): capping the thinking would need the engine to force
    `</think>` into a running row, which its step API cannot do yet."""
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise bad_param("reasoning_effort", f"reasoning_effort must be one of {list(REASONING_EFFORTS)}, got {effort!r}")


def parse_chat_request(body) -> ChatRequest:
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_param("model", "model is required (a string)", "invalid_type")
    max_tokens = _integer(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_param("stream_options", "stream_options must be an object", "invalid_type")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_param("stream", "stream must be a boolean", "invalid_type")
    _refuse_unsupported(body)
    _check_reasoning_effort(body)
    return ChatRequest(
        model=model,
        messages=_messages(body.get("messages")),
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", DEFAULT_TEMPERATURE, 0.0, 2.0),
        top_p=_number(body, "top_p", DEFAULT_TOP_P, 0.0, 1.0, low_open=True),
        stop=_stop(body.get("stop")),
        n=_integer(body, "n", 1, MAX_CHOICES) or 1,
        seed=_integer(body, "seed", -(2**63), 2**63 - 1),
        stream=stream,
        include_usage=bool((options or {}).get("include_usage", False)),
        logprobs=_logprobs(body),
    )


# ---------------------------------------------------------------- response shapes
def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens}}


def reasoning_fields(text: str | None) -> dict:
    """Both names: DeepSeek/SGLang/LibreChat read `reasoning_content`, newer vLLM clients `reasoning`."""
    return {"reasoning_content": text, "reasoning": text}


def chunk(cid: str, created: int, model: str, choices: list[dict], usage_: dict | None = None) -> dict:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}
    if usage_ is not None:
        body["usage"] = usage_
    return body


def logprob_entry(text: str, logprob: float) -> dict:
    """One token in OpenAI's `logprobs.content` list (no alternatives: `top_logprobs` stays empty)."""
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8")), "top_logprobs": []}


def logprobs_field(entries: list[dict] | None) -> dict | None:
    return None if entries is None else {"content": entries, "refusal": None}


def chunk_choice(index: int, delta: dict, finish_reason: str | None = None, logprobs: list[dict] | None = None) -> dict:
    return {"index": index, "delta": delta, "logprobs": logprobs_field(logprobs), "finish_reason": finish_reason}


def completion(cid: str, model: str, choices: list[dict], usage_: dict) -> dict:
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage_}


def completion_choice(index: int, reasoning: str, content: str | None, finish_reason: str,
                      logprobs: list[dict] | None = None) -> dict:
    message = {"role": "assistant", "content": content, **reasoning_fields(reasoning)}
    return {"index": index, "message": message, "logprobs": logprobs_field(logprobs), "finish_reason": finish_reason}
