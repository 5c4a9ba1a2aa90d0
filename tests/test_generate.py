"""Trace generation: a local teacher on a tiny model (determinism, resume), endpoint teachers against a real r1lab
server and a stub that fails on purpose (retries, fail-fast, bounded concurrency), and r1lab's think format."""
import json
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import typer
from serve_support import SCRIPT, running_server, scripted_service
from typer.testing import CliRunner

from r1lab.cli.generate import generate
from r1lab.config import ConfigError
from r1lab.data import TaskConfig
from r1lab.data.prompts import PromptConfig
from r1lab.eval.harness import sample_seed
from r1lab.pipeline.generate import GenerateConfig, generate_traces
from r1lab.pipeline.teachers import EndpointTeacher, LocalTeacher, TeacherError, r1_format
from r1lab.rollout import SamplingParams

QUESTIONS = {"a": ("1+1?", "2"), "b": ("2+3?", "5"), "c": ("4-1?", "3")}
SHORT_PROMPT = PromptConfig(style="chat", example=False, system="")  # keeps the char-level prompts short


@pytest.fixture
def task(tmp_path):
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps({"id": k, "prompt": q, "answer": a}) + "\n" for k, (q, a) in QUESTIONS.items()))
    return TaskConfig(source="jsonl", path=str(path), test_size=0, verifier="numeric")


def local_config(task, output, **fields):
    return GenerateConfig(teacher=fields.pop("teacher", ""), task=task, n=2, max_new_tokens=6, temperature=1.0,
                          top_p=1.0, prompt=SHORT_PROMPT, output=str(output), **fields)


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- local teacher
def test_local_teacher_writes_n_records_per_row(task, tmp_path, tiny_model_dir):
    path = generate_traces(local_config(task, tmp_path / "t.jsonl", teacher=tiny_model_dir), progress=False)
    records = lines(path)
    assert sorted((r["id"], r["sample_index"]) for r in records) == [(k, j) for k in "abc" for j in (0, 1)]
    for r in records:
        assert (r["question"], r["answer"]) == QUESTIONS[r["id"]]
        assert (r["verifier"], r["teacher"], r["metadata"]) == ("numeric", tiny_model_dir, {"id": r["id"]})
        assert r["completion"].startswith("<think>")  # the prefill is part of what the model "said"
        assert 1 <= r["num_tokens"] <= 6 and r["finish_reason"] in ("stop", "length")
    by_row = {}
    for r in records:
        by_row.setdefault(r["id"], []).append(r["completion"])
    assert all(first != second for first, second in by_row.values())  # each sample has its own seed


def test_local_traces_do_not_depend_on_batch_size(task, tmp_path, tiny_model_dir):
    one = generate_traces(local_config(task, tmp_path / "one.jsonl", teacher=tiny_model_dir, batch_size=1), progress=False)
    six = generate_traces(local_config(task, tmp_path / "six.jsonl", teacher=tiny_model_dir, batch_size=6), progress=False)
    assert one.read_bytes() == six.read_bytes()


class CountingTeacher:
    def __init__(self, inner):
        self.inner, self.name, self.rows = inner, inner.name, []

    def sample(self, rows, n, seed):
        self.rows += [r["id"] for r in rows]
        return self.inner.sample(rows, n, seed)


def test_resume_after_a_torn_write_gives_the_uninterrupted_file(task, tmp_path, tiny_model_dir):
    cfg = local_config(task, tmp_path / "full.jsonl", batch_size=2)  # 2 samples per call: one row each
    teacher = CountingTeacher(LocalTeacher(tiny_model_dir, prompt=cfg.prompt, params=cfg.sampling_params(),
                                           batch_size=cfg.batch_size))
    full = generate_traces(cfg, teacher, progress=False).read_bytes()
    assert sorted(teacher.rows) == ["a", "b", "c"]

    done = full.split(b"\n")
    partial = tmp_path / "partial.jsonl"  # row 1 whole, row 2's first sample, half of its second (a kill mid-write)
    partial.write_bytes(b"\n".join(done[:3]) + b"\n" + done[3][: len(done[3]) // 2])
    teacher.rows = []
    generate_traces(local_config(task, partial, batch_size=2), teacher, progress=False)
    assert partial.read_bytes() == full
    assert teacher.rows == [json.loads(done[2])["id"], json.loads(done[4])["id"]]  # the torn row again, then the last

    teacher.rows = []
    generate_traces(local_config(task, partial, batch_size=2), teacher, progress=False)
    assert teacher.rows == [] and partial.read_bytes() == full  # a finished file samples nothing


class NeverCalled:
    name = "me"

    def sample(self, rows, n, seed):
        raise AssertionError("sampled")


def test_resume_refuses_another_teachers_file(task, tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"id": "a", "sample_index": 0, "teacher": "other"}) + "\n")
    with pytest.raises(ValueError, match=r"t\.jsonl:1: written by teacher 'other', this run's teacher is 'me'"):
        generate_traces(local_config(task, path), NeverCalled(), progress=False)


def test_config_needs_exactly_one_teacher(task, tmp_path):
    with pytest.raises(ConfigError, match="no teacher"):
        generate_traces(GenerateConfig(task=task, output=str(tmp_path / "t.jsonl")), progress=False)
    with pytest.raises(ConfigError, match="not both"):
        generate_traces(GenerateConfig(teacher="x", base_url="http://h/v1", task=task), progress=False)
    with pytest.raises(ConfigError, match="endpoint_model is required"):
        generate_traces(GenerateConfig(base_url="http://h/v1", task=task), progress=False)


# ---------------------------------------------------------------- endpoint teacher against `r1lab serve`
def test_endpoint_teacher_against_an_r1lab_server(task, tmp_path):
    # the server splits SCRIPT at </think>: reasoning_content "Two and ... = 2.", content "The answer is 4."
    expected = "<think>\nTwo and two make four.\nCheck: 4 - 2 = 2.\n</think>\nThe answer is 4."
    with running_server(scripted_service(api_key="sekret")) as url:
        cfg = GenerateConfig(base_url=url + "/v1", api_key="sekret", endpoint_model="tiny-r1", task=task, n=2,
                             max_new_tokens=200, output=str(tmp_path / "t.jsonl"))
        records = lines(generate_traces(cfg, progress=False))
        assert sorted((r["id"], r["sample_index"]) for r in records) == [(k, j) for k in "abc" for j in (0, 1)]
        assert {(r["completion"], r["num_tokens"], r["finish_reason"], r["teacher"]) for r in records} == \
            {(expected, len(SCRIPT), "stop", "tiny-r1")}  # the char tokenizer: one token per character

        cut = EndpointTeacher(url + "/v1", "sekret", "tiny-r1", SamplingParams(max_new_tokens=20))
        [[sample]] = cut.sample([{"id": "a", "question": "2+2?"}], 1, seed=0)
        assert (sample.completion, sample.finish_reason, sample.num_tokens) == \
            ("<think>\nTwo and two make fou", "length", 20)  # cut before </think>: the think block stays open

        wrong_key = EndpointTeacher(url + "/v1", "nope", "tiny-r1", SamplingParams())
        with pytest.raises(TeacherError, match="HTTP 401: invalid or missing API key.*check --api-key"):
            wrong_key.sample([{"id": "a", "question": "2+2?"}], 1, seed=0)


@pytest.mark.parametrize("message, text", [
    ({"reasoning_content": "\nadd\n", "content": "4"}, "<think>\nadd\n</think>\n4"),
    ({"reasoning": "add", "content": "4"}, "<think>\nadd\n</think>\n4"),  # newer vLLM's field name
    ({"reasoning_content": "add", "content": None}, "<think>\nadd"),  # cut by max_tokens
    ({"content": "4"}, "4"),  # not a reasoning model: as-is
    ({"content": "add</think>\n4"}, "<think>\nadd</think>\n4"),  # no reasoning parser, template opened the block
    ({"content": None}, ""),
])
def test_r1_format(message, text):
    assert r1_format(message) == text


# ---------------------------------------------------------------- endpoint failures, on a stub server
OK = {"choices": [{"index": 0, "message": {"role": "assistant", "reasoning": "add", "content": "4"},
                   "finish_reason": "stop"}], "usage": {"completion_tokens": 12}}


def error(message):
    return {"error": {"message": message, "type": "x", "param": None, "code": None}}


@contextmanager
def stub_server(replies, delay_s=0.0):
    """Answers POSTs with `replies` in order (the last one repeats); records every request and the peak in flight."""
    seen = {"requests": [], "in_flight": 0, "peak": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                seen["requests"].append((self.path, self.headers.get("Authorization"), body))
                status, payload = replies[min(len(seen["requests"]), len(replies)) - 1]
                seen["in_flight"] += 1
                seen["peak"] = max(seen["peak"], seen["in_flight"])
            time.sleep(delay_s)
            with lock:
                seen["in_flight"] -= 1
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


ROW = {"id": "q1", "question": "2+2?"}


def teacher(url, **options):
    return EndpointTeacher(url, "k", "m", SamplingParams(max_new_tokens=50, temperature=0.6, top_p=0.95),
                           backoff_s=0.01, user_suffix="Box it.", **options)


def test_429_and_503_are_retried_until_success():
    with stub_server([(429, error("slow down")), (503, error("overloaded")), (200, OK)]) as (url, seen):
        [[sample]] = teacher(url).sample([ROW], 1, seed=7)
    assert (sample.completion, sample.num_tokens, sample.finish_reason) == ("<think>\nadd\n</think>\n4", 12, "stop")
    assert len(seen["requests"]) == 3
    path, auth, body = seen["requests"][0]
    assert (path, auth) == ("/v1/chat/completions", "Bearer k")
    assert body == {"model": "m", "messages": [{"role": "user", "content": "2+2?\nBox it."}], "n": 1,
                    "temperature": 0.6, "top_p": 0.95, "max_tokens": 50, "seed": sample_seed(7, "q1", 0)}
    assert all(b == body for _, _, b in seen["requests"])  # a retry is the same request


def test_retries_give_up_with_the_last_error():
    with stub_server([(503, error("overloaded"))]) as (url, seen):
        with pytest.raises(TeacherError, match=r"gave up after 3 attempt\(s\); last error: HTTP 503: overloaded"):
            teacher(url, retries=2).sample([ROW], 1, seed=0)
    assert len(seen["requests"]) == 3


def test_unreachable_server_is_retried_then_reported():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TeacherError, match=r"gave up after 2 attempt\(s\); last error: URLError: .*refused"):
        teacher(f"http://127.0.0.1:{port}/v1", retries=1).sample([ROW], 1, seed=0)


def test_401_fails_fast_with_the_servers_message():
    with stub_server([(401, error("Incorrect API key provided"))]) as (url, seen):
        with pytest.raises(TeacherError, match=r"HTTP 401: Incorrect API key provided \(check --api-key"):
            teacher(url, retries=5).sample([ROW, {"id": "q2", "question": "3+3?"}], 1, seed=0)
    assert len(seen["requests"]) <= 2  # one per sample already in flight, none retried


def test_concurrency_bounds_requests_in_flight():
    with stub_server([(200, OK)], delay_s=0.05) as (url, seen):
        samples = teacher(url, concurrency=2).sample([ROW, {"id": "q2", "question": "3+3?"}], 3, seed=0)
    assert [len(s) for s in samples] == [3, 3]
    assert len(seen["requests"]) == 6 and seen["peak"] == 2
    seeds = [body["seed"] for _, _, body in seen["requests"]]
    assert sorted(seeds) == sorted(sample_seed(0, i, j) for i in ("q1", "q2") for j in range(3))


def test_generate_command_maps_flags_and_reads_the_key_from_the_environment(task, tmp_path):
    app = typer.Typer()
    app.command()(generate)
    output = tmp_path / "t.jsonl"
    with stub_server([(200, OK)]) as (url, seen):
        result = CliRunner().invoke(app, ["--base-url", url, "--model", "m", "--n", "1", "--limit", "2",
                                          "-o", str(output), "-s", "task.source=jsonl", "-s", f"task.path={task.path}",
                                          "-s", "task.test_size=0", "-s", "concurrency=1"],
                                    env={"R1LAB_TEACHER_API_KEY": "from-env"})
    assert result.exit_code == 0, result.output
    assert [(auth, body["model"]) for _, auth, body in seen["requests"]] == 2 * [("Bearer from-env", "m")]
    assert [r["completion"] for r in lines(output)] == 2 * ["<think>\nadd\n</think>\n4"]
    bad = CliRunner().invoke(app, ["--teacher", "x", "--base-url", url, "-o", str(output)])
    assert bad.exit_code == 2 and "not both" in bad.output
