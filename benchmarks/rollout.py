"""Rollout throughput: r1lab's NativeEngine vs transformers `generate` (HFEngine), side by side.

    python benchmarks/rollout.py                      # SmolLM2-135M, batch 1/8/32/64, 64 new tokens
    python benchmarks/rollout.py --batches 32 --new-tokens 32 --reps 1
    python benchmarks/rollout.py --model gemma3-270m --batches 8 --new-tokens 32   # a base model: the R1-Zero template

Both engines run in this one process, interleaved per batch size (HF, ours, HF, ours ...), on the
same chat prompts, sampling at temperature 1 without log-probs (as the GRPO trainer asks;
--logprobs turns them on) and EOS ignored, so both produce exactly batch * new_tokens tokens.
Reported tokens/s is end to end (prefill included), best of --reps. "native" is the engine as
r1lab's trainers, evaluation and server build it (`make_engine("native")`: fp32, weights
prepacked for oneDNN where torch has it, same numbers as the model). Every speed-up is against
transformers `generate` in fp32, the model's own dtype. The bf16 column is NativeEngine(dtype=
bfloat16), timed where this CPU runs bf16 GEMMs faster (AVX-512 BF16 / AMX; --bf16 yes|no forces
it), its K/V cache in bf16 where the decode-attention kernel builds (--bf16-fp32-kv adds the same engine with
fp32 K/V beside it; --unfused adds the bf16 and int8 engines without the fused decode ops); --hf-bf16 adds transformers `generate` on a bf16 copy as a second baseline. The int8 column
is NativeEngine(quantize="int8"): faster on AVX2, not exact. It also checks that greedy fp32
output matches transformers token for token.

llama.cpp: where `llama_cpp` is importable (pip install llama-cpp-python: it builds llama.cpp from source,
~9 min on 2 cores; a benchmark-only step, never a CI dependency), batch 1 also runs llama.cpp on the alias's
own GGUF file (its weight format, e.g. Q4_1, printed beside it) with the same prompt token ids and thread
count, sampling at T=1 over the whole vocabulary, exactly --new-tokens tokens. Its Python binding decodes
one sequence, so it appears at batch 1 only.

Roofline: the best 1024^3 GEMM GFLOP/s sampled during the run in the engine's dtype (fp32 is
re-sampled after every batch size because a shared machine makes single samples noisy) divided by
2 * (linear-layer params incl. LM head) FLOPs per token, at the thread count used. The main table's
% roofline is end to end: its time includes the prompts' prefill, whose FLOPs the roofline does not
count (at batch 32 x ~60-token prompts, ~40 % of all the work), so it cannot approach 100 %. A second
table gives each rooflined engine's decode steps alone: (tokens 2..n) / (time of the generate beyond
the same generate of one token), against the same roofline.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from r1lab.data.prompts import R1_ZERO_TEMPLATE
from r1lab.gguf import GGUF_ALIASES, alias_file
from r1lab.models import load_model, load_tokenizer
from r1lab.precision import bf16_is_faster, cpu_name
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.engine import NativeEngine
from r1lab.rollout.factory import make_engine
from r1lab.rollout.hf import HFEngine

QUESTIONS = [
    "What is 17 + 25?", "A train travels 60 km in 1.5 hours. What is its average speed in km/h?",
    "Compute the greatest common divisor of 84 and 126.", "If x + 3 = 11, what is x?",
    "How many minutes are there in 7 hours?", "What is the sum of the first ten positive integers?",
    "Sara has 3 boxes with 12 pencils each and gives away 7 pencils. How many are left?",
    "Is 91 a prime number? Explain briefly.",
]
SYSTEM = ("Think step by step inside <think> </think> tags, then give only the final answer inside "
          "<answer> </answer> tags.")


def chat_prompts(tokenizer, n: int) -> list[list[int]]:
    """n distinct chat prompts (question i, variant i // len(QUESTIONS)) of ragged lengths; a base
    model without a chat template (gemma3-270m) gets the R1-Zero template as plain text instead."""
    out = []
    for i in range(n):
        question = QUESTIONS[i % len(QUESTIONS)] + (f" (variant {i // len(QUESTIONS)})" if i >= len(QUESTIONS) else "")
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        else:  # the tokenizer adds what the model expects (Gemma's <bos>)
            out.append(tokenizer(R1_ZERO_TEMPLATE.format(prompt=question) + " <think>")["input_ids"])
    return out


def gemm_peak(dtype: torch.dtype, n: int = 1024, seconds: float = 1.0) -> float:
    """Best GFLOP/s of an n^3 matmul over ~`seconds`."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def linear_params(model) -> int:
    """Parameters that cost 2 FLOPs per token: every Linear incl. the LM head (a tied embedding once)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


class IgnoreEOS:
    """Every engine generates exactly n tokens, so token counts are equal: HF suppresses EOS via
    min_new_tokens (one cheap logits processor), native engines get an empty EOS set."""

    def __init__(self, hf_models: list, natives: list[NativeEngine], n: int):
        self.models, self.natives, self.n = hf_models, natives, n

    def __enter__(self):
        self.saved = ([m.generation_config.min_new_tokens for m in self.models], [e.eos_ids for e in self.natives])
        for model in self.models:
            model.generation_config.min_new_tokens = self.n
        for engine in self.natives:
            engine.eos_ids = set()

    def __exit__(self, *exc):
        for model, n in zip(self.models, self.saved[0]):
            model.generation_config.min_new_tokens = n
        for engine, ids in zip(self.natives, self.saved[1]):
            engine.eos_ids = ids


class LlamaCpp:
    """llama.cpp through llama-cpp-python on a GGUF file, one sequence at a time, EOS ignored."""

    def __init__(self, path: Path, threads: int):
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(path), n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)
        self.weights = path.name.rsplit(".", 2)[-2] if path.name.count(".") >= 2 else path.stem

    def generate(self, prompts, params, seeds):
        if len(prompts) != 1:
            raise ValueError("the llama.cpp baseline runs batch 1 only")
        self.llm.set_seed(seeds[0])
        tokens = []
        for token in self.llm.generate(prompts[0], temp=params.temperature, top_k=0, top_p=1.0, min_p=0.0,
                                       repeat_penalty=1.0, reset=True):
            tokens.append(token)
            if len(tokens) == params.max_new_tokens:
                break
        return [SimpleNamespace(token_ids=tokens)]


def llama_cpp_baseline(alias: str, threads: int, scratch: Path) -> LlamaCpp | None:
    """llama.cpp on the alias's GGUF when llama_cpp is importable and the model is a bundled GGUF alias."""
    if importlib.util.find_spec("llama_cpp") is None or alias not in GGUF_ALIASES:
        return None
    return LlamaCpp(alias_file(alias, scratch), threads)


def timed(engine, prompts, params, seeds) -> tuple[float, list]:
    start = time.perf_counter()
    out = engine.generate(prompts, params, seeds)
    return time.perf_counter() - start, out


def greedy_check(model, tokenizer, native: NativeEngine, n_prompts: int = 8, new_tokens: int = 48) -> str:
    prompts = chat_prompts(tokenizer, n_prompts)
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)
    ours = native.generate(prompts, params)
    theirs = HFEngine(model, tokenizer).generate(prompts, params)
    same = sum(a.token_ids == b.token_ids for a, b in zip(ours, theirs))
    tokens = sum(len(c.token_ids) for c in theirs)
    return f"greedy fp32, {n_prompts} prompts x <= {new_tokens} tokens ({tokens} tokens): {same}/{n_prompts} identical to transformers generate"


ROOFLINED = {"native": "fp32", "bf16": "bf16", "bf16_fp32_kv": "bf16", "bf16_unfused": "bf16"}  # engine -> the dtype of its roofline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--bf16", choices=["auto", "yes", "no"], default="auto",
                        help="time NativeEngine(dtype=bfloat16) too (auto: where bf16 GEMMs are faster here)")
    parser.add_argument("--hf-bf16", action="store_true", help="also time transformers generate on a bf16 copy")
    parser.add_argument("--bf16-fp32-kv", action="store_true",
                        help="also time the bf16 engine with an fp32 KV cache (kv_dtype=float32; default: bf16 K/V)")
    parser.add_argument("--no-int8", action="store_true", help="skip NativeEngine(quantize='int8')")
    parser.add_argument("--unfused", action="store_true",
                        help="also time the bf16 and int8 engines without the fused decode ops (fused=False)")
    parser.add_argument("--no-llama-cpp", action="store_true", help="skip the llama.cpp baseline at batch 1")
    parser.add_argument("--group", type=int, default=1,
                        help="copies of each prompt (GRPO samples a group per prompt; 1 = all distinct)")
    parser.add_argument("--logprobs", action="store_true", help="ask for log-probs (the GRPO trainer does not)")
    parser.add_argument("--skip-check", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model(args.model).eval()
    tokenizer = load_tokenizer(args.model)
    native = make_engine("native", model, tokenizer)  # as r1lab's trainers, eval and server build it (prepacked)
    with_bf16 = args.bf16 == "yes" or (args.bf16 == "auto" and bf16_is_faster())
    native_bf16 = make_engine("native", model, tokenizer, dtype=torch.bfloat16) if with_bf16 else None
    fp32_kv = make_engine("native", model, tokenizer, dtype=torch.bfloat16, kv_dtype=torch.float32) \
        if with_bf16 and args.bf16_fp32_kv else None
    native_int8 = None if args.no_int8 else NativeEngine(model, tokenizer, quantize="int8")
    bf16_unfused = make_engine("native", model, tokenizer, dtype=torch.bfloat16, fused=False) \
        if with_bf16 and args.unfused else None
    int8_unfused = NativeEngine(model, tokenizer, quantize="int8", fused=False) \
        if native_int8 and args.unfused else None
    hf = HFEngine(model, tokenizer)
    hf_models = [model] + ([copy.deepcopy(model).to(torch.bfloat16)] if args.hf_bf16 else [])
    hf_bf16 = HFEngine(hf_models[1], tokenizer) if args.hf_bf16 else None
    scratch = tempfile.TemporaryDirectory(prefix="r1lab-bench-gguf-")
    llama = None if args.no_llama_cpp else llama_cpp_baseline(args.model, args.threads, Path(scratch.name))
    # On a shared machine one short GEMM sample can land in a busy moment: the peak is the best
    # sample over the whole run (re-measured after every batch size), and the table is printed last.
    peak = {"fp32": gemm_peak(torch.float32), "bf16": gemm_peak(torch.bfloat16)}
    flops_per_token = 2 * linear_params(model)
    load_start = os.getloadavg()[0]
    check = None if args.skip_check else greedy_check(model, tokenizer, native)

    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=1.0, logprobs=args.logprobs)
    one_token = SamplingParams(max_new_tokens=1, temperature=1.0, logprobs=args.logprobs)
    # Every speed-up is against transformers generate in fp32 (the model's dtype: what users run).
    columns = [("hf_bf16", "HF gen bf16 tok/s"), ("native", "native tok/s"), ("bf16", "native bf16 tok/s"),
               ("bf16_fp32_kv", "bf16, fp32 K/V tok/s"), ("bf16_unfused", "bf16 unfused tok/s"),
               ("int8", "native int8 tok/s"), ("int8_unfused", "int8 unfused tok/s")] + ([("llama_cpp", f"llama.cpp {llama.weights} tok/s")] if llama else [])
    header = f"{'batch':>5} | {'prompt tok':>10} | {'HF generate tok/s':>17}"
    for name, title in columns:
        optional = {"hf_bf16": hf_bf16, "bf16": native_bf16, "bf16_fp32_kv": fp32_kv, "int8": native_int8,
                    "bf16_unfused": bf16_unfused, "int8_unfused": int8_unfused}
        if name in optional and optional[name] is None:
            continue
        header += f" | {title:>{max(17, len(title))}} | {'speedup':>7}" + (f" | {'% roofline':>10}" if name in ROOFLINED else "")
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        distinct = chat_prompts(tokenizer, max(1, batch // args.group))
        prompts = [p for p in distinct for _ in range(args.group)][:batch]
        seeds = list(range(batch))
        engines = {"hf": hf, "hf_bf16": hf_bf16, "native": native, "bf16": native_bf16, "bf16_fp32_kv": fp32_kv,
                   "bf16_unfused": bf16_unfused, "int8": native_int8, "int8_unfused": int8_unfused,
                   "llama_cpp": llama if batch == 1 else None}
        engines = {name: e for name, e in engines.items() if e is not None}
        best = {name: float("inf") for name in engines}
        first = {name: float("inf") for name in engines if name in ROOFLINED}  # prefill + the first token
        with IgnoreEOS(hf_models, [e for e in engines.values() if isinstance(e, NativeEngine)], args.new_tokens):
            for _ in range(args.reps):
                for name, engine in engines.items():
                    seconds, out = timed(engine, prompts, params, seeds)
                    assert all(len(c.token_ids) == args.new_tokens for c in out), "token counts must match"
                    best[name] = min(best[name], seconds)
                    if name in first:
                        first[name] = min(first[name], timed(engine, prompts, one_token, seeds)[0])
        tokens = batch * args.new_tokens
        decode = {name: batch * (args.new_tokens - 1) / (best[name] - t) for name, t in first.items() if best[name] > t}
        rows.append((batch, sum(map(len, prompts)), {name: tokens / t for name, t in best.items()}, decode))
        print(f"batch {batch} done: " + ", ".join(f"{n} {r:.1f} tok/s" for n, r in rows[-1][2].items()),
              file=sys.stderr, flush=True)
        peak["fp32"] = max(peak["fp32"], gemm_peak(torch.float32))

    roof = {dtype: gflops * 1e9 / flops_per_token for dtype, gflops in peak.items()}
    print(f"machine: {cpu_name()}, torch threads "
          f"{args.threads}, load avg {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    print(f"GEMM peak (1024^3, best sample over the run): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} "
          f"GFLOP/s; {flops_per_token / 1e6:.0f} MFLOP/token -> roofline fp32 {roof['fp32']:.0f} tok/s, "
          f"bf16 {roof['bf16']:.0f} tok/s (each engine's % roofline uses its own dtype's)")
    if check:
        print(check)
    print(f"\nsampling T=1, logprobs={args.logprobs}, {args.new_tokens} new tokens per row (EOS ignored), "
          f"{'distinct prompts' if args.group == 1 else f'groups of {args.group} copies per prompt'}, "
          f"tok/s end to end (prefill included), best of {args.reps}")
    print(header)
    print("-" * len(header))
    for batch, prompt_tokens, rate, _ in rows:
        line = f"{batch:>5} | {prompt_tokens:>10} | {rate['hf']:>17.1f}"
        for name, title in columns:
            width = max(17, len(title))
            if name == "llama_cpp" and name not in rate:  # batch 1 only
                line += f" | {'-':>{width}} | {'-':>7}"
            elif name in rate:
                line += f" | {rate[name]:>{width}.1f} | {rate[name] / rate['hf']:>6.2f}x"
                if name in ROOFLINED:
                    line += f" | {100 * rate[name] / roof[ROOFLINED[name]]:>9.1f}%"
        print(line)
    print(f"\ndecode steps alone (prefill excluded): tokens 2..{args.new_tokens} of each row over the time a "
          f"generate takes beyond the same generate of 1 token (prefill + the first), best of {args.reps} each")
    names = [name for name in ROOFLINED if any(name in decode for *_, decode in rows)]
    header = f"{'batch':>5}" + "".join(f" | {name + ' decode tok/s':>24} | {'% roofline':>10}" for name in names)
    print(header)
    print("-" * len(header))
    for batch, _, _, decode in rows:
        line = f"{batch:>5}"
        for name in names:
            line += (f" | {decode[name]:>24.1f} | {100 * decode[name] / roof[ROOFLINED[name]]:>9.1f}%" if name in decode
                     else f" | {'-':>24} | {'-':>10}")
        print(line)
    batch1 = next((rate for batch, _, rate, _ in rows if batch == 1 and "llama_cpp" in rate), None)
    if batch1:
        ours = {name: r for name, r in batch1.items() if name in ("native", "bf16", "bf16_fp32_kv", "int8")}  # as shipped
        name = max(ours, key=ours.get)
        print(f"\nbatch 1: r1lab's fastest ({name}) {ours[name]:.1f} tok/s vs llama.cpp ({llama.weights} GGUF) "
              f"{batch1['llama_cpp']:.1f} tok/s: {ours[name] / batch1['llama_cpp']:.2f}x")


if __name__ == "__main__":
    main()
