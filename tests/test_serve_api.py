"""The HTTP API, driven by the official `openai` client against a real server with a scripted engine."""
import http.client
import json
import socket
import threading
from urllib.parse import urlparse

import openai
import pytest
from serve_support import SCRIPT, ScriptedEngine, running_server, scripted_service, wait_until

from r1lab.models import tiny_tokenizer
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.scheduler import Row
from r1lab.serve.batcher import Batcher
from r1lab.serve.reasoning import split_reasoning

MODEL = "tiny-r1"
ASK = [{"role": "user", "content": "What is 2+2?"}]
REASONING, ANSWER = split_reasoning(SCRIPT)


@pytest.fixture(scope="module")
def server():
    service = scripted_service()
    with running_server(service) as url:
        yield url, service


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0, timeout=20)


def raw_post(url: str, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    parts = urlparse(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def extra(delta, name):
    return (delta.model_extra or {}).get(name)


def test_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_completion_splits_reasoning_from_the_answer_and_counts_tokens(client):
    response = client.chat.completions.create(model=MODEL, messages=ASK)
    message = response.choices[0].message
    assert (message.content, extra(message, "reasoning_content"), extra(message, "reasoning")) == \
        (ANSWER, REASONING, REASONING)
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.completion_tokens == len(SCRIPT)  # the tiny tokenizer is one token per character
    assert response.usage.completion_tokens_details.reasoning_tokens == SCRIPT.index("</think>") + len("</think>")
    assert response.usage.prompt_tokens > len("What is 2+2?") + len("<think>\n")


def test_stream_sends_reasoning_deltas_then_content_deltas(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=ASK, stream=True,
                                                 stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    kinds = ["reasoning" if extra(d, "reasoning_content") else "content" for d in deltas if
             extra(d, "reasoning_content") or d.content]
    assert kinds == sorted(kinds, key=["reasoning", "content"].index) and set(kinds) == {"reasoning", "content"}
    assert "".join(extra(d, "reasoning_content") or "" for d in deltas) == REASONING
    assert "".join(extra(d, "reasoning") or "" for d in deltas) == REASONING
    assert "".join(d.content or "" for d in deltas) == ANSWER
    assert deltas[0].role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(SCRIPT)


def test_max_tokens_inside_the_reasoning_gives_null_content_and_length(client):
    response = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5)
    choice = response.choices[0]
    assert (choice.message.content, extra(choice.message, "reasoning_content"), choice.finish_reason) == \
        (None, SCRIPT[:5], "length")
    assert response.usage.completion_tokens == response.usage.completion_tokens_details.reasoning_tokens == 5


def test_stop_string_cuts_the_answer(client):
    response = client.chat.completions.create(model=MODEL, messages=ASK, stop=[" is"])
    assert response.choices[0].message.content == "The answer"
    assert response.choices[0].finish_reason == "stop"


def test_n_returns_that_many_choices(client):
    response = client.chat.completions.create(model=MODEL, messages=ASK, n=3)
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert {c.message.content for c in response.choices} == {ANSWER}
    assert response.usage.completion_tokens == 3 * len(SCRIPT)


@pytest.mark.parametrize("params, param", [
    ({"temperature": 5}, "temperature"), ({"top_p": 0}, "top_p"), ({"n": 0}, "n"), ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 10**6}, "messages"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
])
def test_bad_parameters_are_400_with_the_parameter_named(client, params, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=ASK, **params)
    assert info.value.status_code == 400 and info.value.body["param"] == param


def test_an_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=ASK)
    assert info.value.body["code"] == "model_not_found"


def test_sending_back_reasoning_content_in_a_multi_turn_chat_is_400(client):
    first = client.chat.completions.create(model=MODEL, messages=ASK).choices[0].message
    history = [*ASK, first.model_dump(exclude_none=True), {"role": "user", "content": "And 3+3?"}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=history)
    assert info.value.body["code"] == "reasoning_content_in_input"
    good = [*ASK, {"role": "assistant", "content": first.content}, {"role": "user", "content": "And 3+3?"}]
    assert client.chat.completions.create(model=MODEL, messages=good).choices[0].message.content == ANSWER


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_malformed_bodies_get_an_openai_error_object(server, payload):
    status, body = raw_post(server[0], "/v1/chat/completions", payload)
    assert status == 400 and set(body["error"]) == {"message", "type", "param", "code"}


def test_unknown_routes_get_an_openai_error_object(server):
    status, body = raw_post(server[0], "/v1/completions", b"{}")
    assert status == 404 and body["error"]["type"] == "not_found_error"


def test_concurrent_requests_are_decoded_in_one_batch():
    service = scripted_service(step_s=0.005)
    with running_server(service) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=20)
        results = []
        threads = [threading.Thread(target=lambda: results.append(
            client.chat.completions.create(model=MODEL, messages=ASK).choices[0].message.content)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert results == [ANSWER] * 8
    assert service.batcher.engine.max_live == 8


def test_requests_waiting_together_share_one_prefill_and_later_ones_join_between_steps():
    engine = ScriptedEngine(tiny_tokenizer(), step_s=0.002)
    batcher = Batcher(engine)
    finished = []

    def request(n: int) -> list[Row]:
        return [Row([5, 6, 7], SamplingParams(max_new_tokens=40), on_finish=finished.append) for _ in range(n)]

    batcher.submit(request(2))  # n = 2
    batcher.submit(request(1))
    batcher.start()
    try:
        wait_until(lambda: engine.steps >= 5)
        batcher.submit(request(1))
        wait_until(lambda: len(finished) == 4)
    finally:
        batcher.stop()
    assert engine.prefill_sizes == [3, 1]  # one prefill for the three rows that waited together
    assert engine.max_live == 4  # the late one decoded beside them
    assert finished == ["length"] * 4


def test_a_full_queue_answers_429():
    service = scripted_service(step_s=0.01, max_rows=1, max_waiting=1)
    with running_server(service) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=20)
        running = threading.Thread(target=lambda: client.chat.completions.create(model=MODEL, messages=ASK))
        waiting = threading.Thread(target=lambda: client.chat.completions.create(model=MODEL, messages=ASK))
        running.start()
        wait_until(lambda: service.batcher.engine.steps > 0)
        waiting.start()
        wait_until(lambda: service.batcher.waiting == 1)
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model=MODEL, messages=ASK)
        assert info.value.body["type"] == "rate_limit_error"
        running.join(timeout=30)
        waiting.join(timeout=30)


def test_a_streaming_client_that_disconnects_stops_its_generation():
    service = scripted_service(step_s=0.02)
    engine = service.batcher.engine
    with running_server(service) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=20)
        stream = client.chat.completions.create(model=MODEL, messages=ASK, stream=True)
        for i, _ in enumerate(stream):
            if i == 3:
                break
        stream.close()
        wait_until(lambda: engine.cancelled_after)
    assert engine.cancelled_after[0] < len(SCRIPT) // 2


def test_a_non_streaming_client_that_disconnects_stops_its_generation():
    service = scripted_service(step_s=0.02)
    engine = service.batcher.engine
    with running_server(service) as url:
        parts = urlparse(url)
        body = json.dumps({"model": MODEL, "messages": ASK}).encode()
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            wait_until(lambda: engine.steps >= 3)
        wait_until(lambda: engine.cancelled_after)
    assert engine.cancelled_after[0] < len(SCRIPT) // 2


def test_api_key_is_required_when_configured():
    with running_server(scripted_service(api_key="sekret")) as url:
        wrong = openai.OpenAI(base_url=url + "/v1", api_key="guess", max_retries=0, timeout=20)
        with pytest.raises(openai.AuthenticationError) as info:
            wrong.models.list()
        assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            wrong.chat.completions.create(model=MODEL, messages=ASK)
        status, _ = raw_post(url, "/v1/chat/completions", b"{}")  # no Authorization header at all
        assert status == 401
        right = openai.OpenAI(base_url=url + "/v1", api_key="sekret", max_retries=0, timeout=20)
        assert right.chat.completions.create(model=MODEL, messages=ASK).choices[0].message.content == ANSWER


def test_a_model_failure_is_a_500_error_object_and_the_server_keeps_serving():
    service = scripted_service(fail_once_after=2)  # the first request's rows have 2 tokens when it fails
    with running_server(service) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=20)
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model=MODEL, messages=ASK)
        assert info.value.body["type"] == "server_error"
        assert client.chat.completions.create(model=MODEL, messages=ASK).choices[0].message.content == ANSWER
