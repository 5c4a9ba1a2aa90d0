"""The request body: read under a size limit (413), decoded as strict JSON (400 `invalid_json`).

Decoding runs off the event loop (the caller hands `decode_json` to a thread): with the body limit,
it is bounded work, and /health and the streams of other requests keep being served meanwhile.
"""
from __future__ import annotations

import json

from starlette.requests import Request

from r1lab.serve.errors import ApiError

DEFAULT_MAX_BODY_BYTES = 8 * 2**20  # a full 128k-token context of text is ~0.5 MB: 8 MB is generous


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than this server's limit of {limit} bytes",
                    code="request_too_large")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed `limit` (by its Content-Length, or while
    reading a chunked one), so an oversized upload is never held in memory whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def decode_json(raw: bytes):
    """Strict JSON: no NaN/Infinity, no lone UTF-16 surrogates (not Unicode: they cannot be encoded
    back to UTF-8, neither for the tokenizer nor in our reply), no nesting deeper than Python's stack."""
    try:
        body = json.loads(raw, parse_constant=_no_constant)
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        raise ApiError(400, "the request body holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is "
                            "not a Unicode character", code="invalid_json") from err
    except RecursionError as err:
        raise ApiError(400, "the request body is nested too deeply", code="invalid_json") from err
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise ApiError(400, f"the request body is not valid JSON: {err}", code="invalid_json") from err
    return body
