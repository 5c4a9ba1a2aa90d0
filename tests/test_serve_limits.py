"""The server against hostile or unusual requests: bad numbers and strings, deep and large bodies, features
it lacks, log-probs, unknown routes, and /health staying responsive while a big request is processed."""
import http.client
import json
import threading
from urllib.parse import urlparse

import openai
import pytest
from serve_support import SCRIPT, running_server, scripted_logprob, scripted_service, wait_until

from r1lab.serve import app as serve_app
from r1lab.serve.reasoning import split_reasoning

MODEL = "tiny-r1"
ASK = [{"role": "user", "content": "What is 2+2?"}]
GOOD = json.dumps({"model": MODEL, "messages": ASK}).encode()
REASONING, ANSWER = split_reasoning(SCRIPT)


@pytest.fixture(scope="module")
def server():
    with running_server(scripted_service()) as url:
        yield url


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=20)


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlparse(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)


def post(conn: http.client.HTTPConnection, body: bytes, path: str = "/v1/chat/completions",
         headers: dict | None = None) -> tuple[int, dict]:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def chat(content: str = "hi", **fields) -> bytes:
    return json.dumps({"model": MODEL, "messages": [{"role": "user", "content": content}], **fields}).encode()


@pytest.mark.parametrize("body, param", [
    (b'{"model": "tiny-r1", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', None),
    (b'{"model": "tiny-r1", "messages": [{"role": "user", "content": "hi"}], "temperature": Infinity}', None),
    (b'{"model": "tiny-r1", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}', "temperature"),
    (b'{"model": "tiny-r1", "messages": [{"role": "user", "content": "hi"}], "top_p": -1e999}', "top_p"),
])
def test_non_finite_numbers_are_400(server, body, param):
    conn = connect(server)
    try:
        status, answer = post(conn, body)
    finally:
        conn.close()
    assert status == 400 and answer["error"]["param"] == param
    assert answer["error"]["code"] == ("invalid_json" if param is None else "invalid_value")


def test_a_lone_surrogate_is_400_and_the_keep_alive_connection_keeps_serving(server):
    conn = connect(server)
    try:
        status, answer = post(conn, chat().replace(b'"hi"', b'"\\ud800"'))
        assert status == 400 and answer["error"]["code"] == "invalid_json" and "surrogate" in answer["error"]["message"]
        status, answer = post(conn, GOOD)  # the same connection
        assert status == 200 and answer["choices"][0]["message"]["content"] == ANSWER
    finally:
        conn.close()


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000,
                                  chat()[:-1] + b', "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"])
def test_deeply_nested_json_is_400_invalid_json(server, body):
    conn = connect(server)
    try:
        status, answer = post(conn, body)
    finally:
        conn.close()
    assert status == 400 and answer["error"]["code"] == "invalid_json"


def test_a_body_over_the_limit_is_413_whether_its_length_is_declared_or_not():
    service = scripted_service()
    service.config.max_body_bytes = 1000
    with running_server(service) as url:
        conn = connect(url)
        try:
            big = chat("x" * 2000)
            status, answer = post(conn, big)
            assert status == 413 and answer["error"]["code"] == "request_too_large"
            conn.close()
            # chunked: no Content-Length, the limit is enforced while reading
            conn.request("POST", "/v1/chat/completions", body=iter([big[:600], big[600:]]),
                         headers={"Content-Type": "application/json"}, encode_chunked=True)
            response = conn.getresponse()
            assert response.status == 413 and json.loads(response.read())["error"]["code"] == "request_too_large"
            conn.close()
            assert post(conn, chat("x" * 800))[0] == 200  # under the limit
        finally:
            conn.close()


@pytest.mark.parametrize("stage", ["decode_json", "prompt_ids"])
def test_health_answers_while_a_request_is_being_decoded_or_tokenized(monkeypatch, stage):
    """The blocked stage holds its request until /health has answered: on the event loop, /health could
    not answer at all before the stage's 60 s gate ran out, and the request would fail (no timing threshold)."""
    service = scripted_service(context_length=300_000)  # room for a 100,000-character message
    entered, gate, order = threading.Event(), threading.Event(), []
    target = serve_app if stage == "decode_json" else service
    real = getattr(target, stage)

    def blocked(*args):
        entered.set()
        order.append("stage waits") if gate.wait(timeout=60) else order.append("gate timed out")
        return real(*args)

    monkeypatch.setattr(target, stage, blocked)
    with running_server(service) as url:
        results = []
        request = threading.Thread(target=lambda: results.append(post(connect(url), chat("y" * 100_000))))
        request.start()
        assert entered.wait(timeout=30)
        conn = connect(url)
        conn.request("GET", "/health")
        health = conn.getresponse()
        order.append(("health", health.status, json.loads(health.read())["status"]))
        gate.set()
        request.join(timeout=60)
    assert order == [("health", 200, "ok"), "stage waits"]
    assert results[0][0] == 200 and results[0][1]["choices"][0]["message"]["content"] == ANSWER


@pytest.mark.parametrize("fields, param", [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"logprobs": True, "top_logprobs": 3}, "top_logprobs"),
])
def test_unsupported_features_are_400_unsupported_parameter(client, fields, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=ASK, **fields)
    assert (info.value.body["param"], info.value.body["code"]) == (param, "unsupported_parameter")


def test_reasoning_effort_is_validated_and_accepted(client):
    assert client.chat.completions.create(model=MODEL, messages=ASK, reasoning_effort="low").choices[0] \
        .message.content == ANSWER
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=ASK, extra_body={"reasoning_effort": "max"})
    assert info.value.body["param"] == "reasoning_effort"


EXPECTED_LOGPROBS = [scripted_logprob(k) for k in range(1, len(SCRIPT) + 1)]  # one token per character


def test_logprobs_cover_every_generated_token(client):
    response = client.chat.completions.create(model=MODEL, messages=ASK, logprobs=True, top_logprobs=0)
    entries = response.choices[0].logprobs.content
    assert [e.logprob for e in entries] == EXPECTED_LOGPROBS
    assert "".join(e.token for e in entries) == SCRIPT and entries[0].bytes == list(SCRIPT[0].encode())
    assert len(entries) == response.usage.completion_tokens and all(e.top_logprobs == [] for e in entries)
    assert client.chat.completions.create(model=MODEL, messages=ASK).choices[0].logprobs is None


def test_streamed_logprobs_add_up_to_the_same_list(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=ASK, logprobs=True, stream=True))
    entries = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert [e.logprob for e in entries] == EXPECTED_LOGPROBS


@pytest.mark.parametrize("method, path, status, code", [
    ("POST", "/v1/completions", 404, "unknown_route"), ("GET", "/nope", 404, "unknown_route"),
    ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
])
def test_unknown_routes_and_methods_have_an_error_code(server, method, path, status, code):
    conn = connect(server)
    try:
        conn.request(method, path, body=b"{}" if method == "POST" else None)
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == status and body["error"]["code"] == code


def test_64_concurrent_streams_all_complete():
    service = scripted_service()
    with running_server(service) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60)
        answers, failures = [], []

        def stream_one(seed: int) -> None:
            try:
                chunks = client.chat.completions.create(model=MODEL, messages=ASK, stream=True, seed=seed)
                answers.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
            except Exception as err:  # noqa: BLE001 (counted, then asserted to be none)
                failures.append(err)

        threads = [threading.Thread(target=stream_one, args=(i,)) for i in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        wait_until(lambda: len(answers) + len(failures) == 64, timeout=5)
    assert failures == [] and answers == [ANSWER] * 64
