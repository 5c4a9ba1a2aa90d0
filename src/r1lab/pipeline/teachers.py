"""Teachers: where distillation traces come from. A local model through the shared rollout `Engine`, or any
OpenAI-compatible chat endpoint (DeepSeek's API, vLLM, SGLang, `r1lab serve`).

Both return completions in r1lab's own format, `<think>\\n…\\n</think>\\n` + answer, so a student learns
the same layout whichever teacher wrote its data. Every (row id, sample index) has its own seed, so a
trace does not depend on batching, concurrency or on which rows a resumed run still had to sample.

    teacher = EndpointTeacher("http://127.0.0.1:8000/v1", "", "tiny-r1", SamplingParams(512, 0.6, 0.95))
    samples = teacher.sample(rows, n=4, seed=0)  # samples[i][j]: row i, sample j
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import random
import threading
import urllib.error
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol

from r1lab.data import Row
from r1lab.data.prompts import R1_MATH_SUFFIX, PromptConfig, full_completion, render
from r1lab.eval.harness import sample_seed
from r1lab.rollout import SamplingParams

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
MAX_RETRY_AFTER_S = 60.0  # a server's Retry-After is honoured up to this


@dataclass
class TeacherSample:
    completion: str  # r1lab's format: "<think>\n…\n</think>\n" + answer (think left open if the reply was cut)
    num_tokens: int | None  # generated tokens; None when the teacher does not report them
    finish_reason: str  # "stop" | "length" (| whatever else an endpoint reports)


class Teacher(Protocol):
    name: str  # recorded in every trace, and checked when a trace file is resumed

    def sample(self, rows: list[Row], n: int, seed: int) -> list[list[TeacherSample]]:
        """n samples per row: result[i][j] is sample j of rows[i], seeded by (seed, rows[i]["id"], j)."""
        ...


class TeacherError(RuntimeError):
    """The teacher could not produce samples (endpoint refused or unreachable); the message says why."""


# ---------------------------------------------------------------- local model
class LocalTeacher:
    """A local checkpoint sampled through `r1lab.rollout` (engine "native" or "hf").

    model: alias / checkpoint dir / hub id (loaded here), or an already-loaded model with `tokenizer=`.
    Only the native engine seeds every row on its own; "hf" seeds a whole batch by its first row, so
    its traces depend on batching.
    """

    def __init__(self, model, engine: str = "auto", prompt: PromptConfig | None = None,
                 params: SamplingParams | None = None, batch_size: int = 32, *, tokenizer=None,
                 name: str | None = None) -> None:
        from r1lab.rollout.factory import make_engine

        if isinstance(model, str):
            from r1lab.models import load_model, load_tokenizer

            name = name or model
            tokenizer = tokenizer or load_tokenizer(model)
            model = load_model(model)
        elif tokenizer is None:
            raise ValueError("LocalTeacher: an already-loaded model needs its tokenizer (tokenizer=...)")
        self.name = name or getattr(model.config, "_name_or_path", "") or "local"
        self.prompt = prompt or PromptConfig()
        # traces need text only
        self.params = dataclasses.replace(params or SamplingParams(), logprobs=False).ending_at(self.prompt.stops)
        self.tokenizer = tokenizer
        self.engine = make_engine(engine, model, tokenizer, max_batch_size=batch_size)

    def sample(self, rows: list[Row], n: int, seed: int) -> list[list[TeacherSample]]:
        prompts = [self.tokenizer(render(row["question"], self.prompt, self.tokenizer),
                                  add_special_tokens=False)["input_ids"] for row in rows]
        pairs = [(i, j) for i in range(len(rows)) for j in range(n)]
        seeds = [sample_seed(seed, rows[i]["id"], j) for i, j in pairs]
        completions = self.engine.generate([prompts[i] for i, _ in pairs], self.params, seeds)
        out: list[list[TeacherSample]] = [[] for _ in rows]
        for (i, _), c in zip(pairs, completions, strict=True):
            out[i].append(TeacherSample(full_completion(c.text, self.prompt), len(c.token_ids), c.finish_reason))
        return out


# ---------------------------------------------------------------- OpenAI-compatible endpoint
def r1_format(message: dict) -> str:
    """One chat reply -> r1lab's completion text.

    `reasoning_content` (DeepSeek, SGLang) or `reasoning` (newer vLLM) becomes the think block. A reply
    cut before `</think>` has content null: its think block stays open so rejection can tell. A server
    without a reasoning parser returns the raw text; if its chat template opened the think block, the
    text has `</think>` but no `<think>`, and the opening tag is put back.
    """
    reasoning = message.get("reasoning_content")
    if reasoning is None:
        reasoning = message.get("reasoning")
    content = message.get("content")
    if reasoning is None:
        text = content or ""
        if THINK_CLOSE in text and THINK_OPEN not in text.split(THINK_CLOSE, 1)[0]:
            text = f"{THINK_OPEN}\n{text.lstrip()}"
        return text
    think = f"{THINK_OPEN}\n{reasoning.strip()}"
    return think if content is None else f"{think}\n{THINK_CLOSE}\n{content}"


def _error_detail(err: urllib.error.HTTPError) -> str:
    """OpenAI's error body is {"error": {"message", ...}}; fall back to the raw text."""
    try:
        raw = err.read().decode("utf-8", "replace")
    except OSError:
        return err.reason or ""
    try:
        message = json.loads(raw)["error"]["message"]
        return str(message)
    except (ValueError, KeyError, TypeError):
        return raw.strip()[:300] or str(err.reason)


_HINTS = {
    401: " (check --api-key or R1LAB_TEACHER_API_KEY)",
    403: " (check --api-key or R1LAB_TEACHER_API_KEY)",
    404: " (check base_url, which usually ends in /v1, and the model name)",
}


class EndpointTeacher:
    """Samples an OpenAI-compatible `POST {base_url}/chat/completions`, `concurrency` requests at a time.

    One request per sample (n=1) with the sample's own seed: every sample gets its own
    `usage.completion_tokens` (usage sums over choices), APIs that ignore `n` (DeepSeek's) still give n
    samples, and a failed request retries one sample. Connection errors, timeouts, 429 and 5xx are
    retried with exponential backoff and jitter; any other error status fails at once.
    """

    def __init__(self, base_url: str, api_key: str, model: str, params: SamplingParams, concurrency: int = 8,
                 retries: int = 5, backoff_s: float = 1.0, timeout_s: float = 600, user_suffix: str = R1_MATH_SUFFIX):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError("endpoint teacher: model (the `model` sent in each request) is required")
        if concurrency < 1 or retries < 0 or backoff_s < 0 or timeout_s <= 0:
            raise ValueError(f"need concurrency >= 1, retries >= 0, backoff_s >= 0, timeout_s > 0; got "
                             f"{concurrency}, {retries}, {backoff_s}, {timeout_s}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key, self.name, self.params = api_key, model, params
        self.concurrency, self.retries, self.backoff_s, self.timeout_s = concurrency, retries, backoff_s, timeout_s
        self.user_suffix = user_suffix

    def request_body(self, row: Row, seed: int) -> dict:
        question = f"{row['question']}\n{self.user_suffix}" if self.user_suffix else row["question"]
        return {"model": self.name, "messages": [{"role": "user", "content": question}], "n": 1,
                "temperature": self.params.temperature, "top_p": self.params.top_p,
                "max_tokens": self.params.max_new_tokens, "seed": seed}

    def sample(self, rows: list[Row], n: int, seed: int) -> list[list[TeacherSample]]:
        stop = threading.Event()  # set on the first failure: other workers stop retrying
        pairs = [(i, j) for i in range(len(rows)) for j in range(n)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self._sample_one, rows[i], sample_seed(seed, rows[i]["id"], j), stop)
                       for i, j in pairs]
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                stop.set()
                for f in futures:
                    f.cancel()
                raise failed.exception()
        out: list[list[TeacherSample]] = [[] for _ in rows]
        for (i, _), future in zip(pairs, futures):
            out[i].append(future.result())
        return out

    def _sample_one(self, row: Row, seed: int, stop: threading.Event) -> TeacherSample:
        reply = self._post(self.request_body(row, seed), stop)
        try:
            choice = reply["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise TeacherError(f"{self.url}: the reply has no choices[0].message: {json.dumps(reply)[:300]}") from None
        tokens = (reply.get("usage") or {}).get("completion_tokens")
        return TeacherSample(r1_format(message), int(tokens) if tokens is not None else None,
                             choice.get("finish_reason") or "stop")

    def _post(self, body: dict, stop: threading.Event) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode()
        for attempt in range(self.retries + 1):
            retry_after = None
            try:
                request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    raw = response.read()
                try:
                    return json.loads(raw)
                except ValueError:
                    raise TeacherError(f"{self.url}: the reply is not JSON: {raw[:200]!r}") from None
            except urllib.error.HTTPError as err:  # before URLError: it is one
                failure = f"HTTP {err.code}: {_error_detail(err)}"
                if err.code != 429 and err.code < 500:
                    raise TeacherError(f"{self.url}: {failure}{_HINTS.get(err.code, '')}") from None
                retry_after = err.headers.get("Retry-After")
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
                failure = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            if attempt == self.retries or stop.is_set():
                break
            stop.wait(self._delay(attempt, retry_after))
        raise TeacherError(f"{self.url}: gave up after {attempt + 1} attempt(s); last error: {failure}")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        # jitter spreads the retries of many concurrent workers hit by the same overload
        delay = self.backoff_s * 2 ** attempt * random.uniform(0.5, 1.0)
        try:
            return max(delay, min(float(retry_after), MAX_RETRY_AFTER_S)) if retry_after else delay
        except ValueError:  # an HTTP-date Retry-After: fall back to our own schedule
            return delay
