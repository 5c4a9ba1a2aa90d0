"""Serving load: 64 concurrent streaming requests vs the same 64 sent one at a time.

    python benchmarks/serve_load.py                        # tiny random Llama, 64 requests x 64 tokens
    python benchmarks/serve_load.py --model smollm2-135m --requests 16 --max-tokens 32

Starts `python -m r1lab serve` as a subprocess on 127.0.0.1 (loopback only) and drives it with the
official `openai` async client, streaming with `stream_options.include_usage`. Every request has its
own seed, so both modes generate exactly the same tokens (checked) and the tokens/s compare like for
like. Latency is request start to the stream's end; TTFT is start to the first reasoning/content
delta. A request counts as failed if it raises, or its stream ends without a usage chunk.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import openai

QUESTIONS = ["What is 17 + 25?", "If x + 3 = 11, what is x?", "How many minutes are in 7 hours?",
             "What is the sum of the first ten positive integers?", "Is 91 a prime number?",
             "Compute the greatest common divisor of 84 and 126.", "What is 12 squared?",
             "A train travels 60 km in 1.5 hours. What is its speed in km/h?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_tiny_checkpoint(folder: str) -> str:
    from r1lab.models import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tiny_model("llama", vocab_size=len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def start_server(model: str, port: int, max_batch: int, threads: int | None) -> subprocess.Popen:
    command = [sys.executable, "-m", "r1lab", "serve", "--model", model, "--port", str(port),
               "--served-model-name", "bench", "--max-batch", str(max_batch)]
    if threads is not None:
        command += ["--threads", str(threads)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode}: {server.stderr.read()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("server did not come up within 300 s")


async def one_request(client: openai.AsyncOpenAI, i: int, max_tokens: int) -> dict:
    start = time.perf_counter()
    first = None
    text, usage = [], None
    try:
        stream = await client.chat.completions.create(
            model="bench", messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            max_tokens=max_tokens, temperature=1.0, seed=1000 + i, stream=True,
            stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                piece = (choice.delta.model_extra or {}).get("reasoning_content") or choice.delta.content
                if piece:
                    first = first or time.perf_counter()
                    text.append(piece)
    except openai.OpenAIError as err:
        return {"ok": False, "error": repr(err)}
    end = time.perf_counter()
    if usage is None:
        return {"ok": False, "error": "stream ended without usage"}
    return {"ok": True, "tokens": usage.completion_tokens, "latency": end - start,
            "ttft": (first or end) - start, "text": "".join(text)}


async def run_mode(base_url: str, n: int, max_tokens: int, concurrent: bool) -> tuple[list[dict], float]:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600) as client:
        await one_request(client, 0, 4)  # warm up the connection and the model
        start = time.perf_counter()
        if concurrent:
            results = await asyncio.gather(*(one_request(client, i, max_tokens) for i in range(n)))
        else:
            results = [await one_request(client, i, max_tokens) for i in range(n)]
        return list(results), time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def summary(name: str, results: list[dict], wall: float) -> tuple[str, float]:
    ok = [r for r in results if r["ok"]]
    tokens = sum(r["tokens"] for r in ok)
    latencies, ttfts = [r["latency"] for r in ok], [r["ttft"] for r in ok]
    rate = tokens / wall
    return (f"{name:<16}{len(results):>9}{len(results) - len(ok):>8}{tokens:>8}{wall:>9.2f}{rate:>10.1f}"
            f"{percentile(latencies, 0.5):>8.2f}{percentile(latencies, 0.99):>8.2f}"
            f"{statistics.median(ttfts) if ttfts else float('nan'):>10.2f}"), rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="'tiny' (random 2-layer Llama), an alias or a checkpoint dir")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None,
                        help="server's torch threads (default: 1 for the tiny model, else one per core)")
    args = parser.parse_args()
    if not 1 <= args.requests <= 256:
        parser.error("--requests must be in [1, 256]")

    with tempfile.TemporaryDirectory() as folder:
        model = save_tiny_checkpoint(folder) if args.model == "tiny" else args.model
        port = free_port()
        threads = args.threads if args.threads is not None else (1 if args.model == "tiny" else None)
        server = start_server(model, port, max_batch=max(64, args.requests), threads=threads)
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            one_by_one, one_wall = asyncio.run(run_mode(base_url, args.requests, args.max_tokens, concurrent=False))
            together, together_wall = asyncio.run(run_mode(base_url, args.requests, args.max_tokens, concurrent=True))
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()

    print(f"serve_load: model={args.model}, {args.requests} streaming requests, max_tokens={args.max_tokens}, "
          f"T=1.0, seeded; server: python -m r1lab serve on 127.0.0.1, {os.cpu_count()} CPUs, "
          f"torch threads {threads or 'default'}")
    print(f"{'mode':<16}{'requests':>9}{'failed':>8}{'tokens':>8}{'wall_s':>9}{'tok/s':>10}"
          f"{'p50_s':>8}{'p99_s':>8}{'ttft_p50':>10}")
    line, one_rate = summary("one at a time", one_by_one, one_wall)
    print(line)
    line, together_rate = summary(f"{args.requests} concurrent", together, together_wall)
    print(line)
    same = all(a["ok"] and b["ok"] and a["text"] == b["text"] for a, b in zip(one_by_one, together))
    failed = sum(not r["ok"] for r in one_by_one + together)
    print(f"throughput x{together_rate / one_rate:.1f} concurrent vs one at a time; "
          f"identical outputs both ways: {'yes' if same else 'NO'}; failed requests: {failed}")
    for r in (one_by_one + together):
        if not r["ok"]:
            print("  failure:", r["error"])
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
