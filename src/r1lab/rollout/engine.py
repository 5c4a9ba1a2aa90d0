"""The native rollout engine: continuous batching over a slot KV cache, with a hand-written forward.

Three pieces, as in vLLM: the scheduler (scheduler.py) decides which rows run, admits waiting rows
into free cache slots between steps and retires finished or cancelled ones; the runner (this file's
`NativeRunner`) runs one prefill or one decode step for the rows it is given, over the KV cache,
and samples each row's next token; `Session` (session.py) connects them one step at a time. The
forward itself is forward.py (the model families it runs: families.py). `generate` is a session with every prompt added up front; a
server keeps a session open and adds requests while it runs.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from r1lab.rollout.base import Completion, SamplingParams, check_seeds
from r1lab.rollout.finish import eos_ids_of, finish_completion
from r1lab.rollout.kv_cache import KVCache
from r1lab.rollout.forward import DecoderForward, ModelWeights
from r1lab.rollout.sampling import next_tokens
from r1lab.rollout.scheduler import Row, Scheduler, SlotMove
from r1lab.rollout.session import Session

# Prefill at most this many (padded) prompt tokens per forward, to bound activation memory.
PREFILL_TOKEN_BUDGET = 8192
# A shared prefix shorter than this is not worth a separate forward pass.
MIN_SHARED_PREFIX = 8


def common_prefix_len(prompts: Sequence[Sequence[int]]) -> int:
    first, n = prompts[0], min(len(p) for p in prompts)
    for i in range(n):
        if any(p[i] != first[i] for p in prompts):
            return i
    return n


class NativeEngine:
    """Fast rollouts for the decoder families in families.py (Llama, Qwen2/3, Mistral, Gemma 3, Phi-3/4,
    OLMo 2, SmolLM3); implements the `Engine` protocol and
    the step API (`session()`).

    model: a HF decoder-only causal LM. Weights are read from it whenever a session starts (every
        `generate` call), so in-place updates by a trainer are seen with no re-sync (unless
        `dtype` or `quantize` forces a copy).
    tokenizer: used for EOS ids, stop strings and decoding the completion text.
    dtype: compute dtype. None = the model's dtype, sharing its tensors (exact). A different dtype
        (torch.bfloat16 or "bfloat16" for an fp32 policy) keeps a converted copy: call
        `refresh_weights()` after each optimizer step. "auto" = bf16 where this CPU runs bf16 GEMMs
        faster (AVX-512 BF16 / AMX: ~2.5x faster rollouts), else the model's dtype (AVX2-only CPUs
        emulate bf16 and would be far slower); see r1lab.precision and docs/rollout.md.
    max_batch_size: sequences decoded together; more prompts than this are admitted as others finish.
    quantize: None (default, exact) or "int8": an int8 copy of every Linear (fbgemm), ~2x faster
        decode on AVX2 CPUs but sampling from a slightly perturbed policy; needs `refresh_weights()`.
    prepack: keep weights in oneDNN's blocked layout (rollout/linear.py). None = whenever a copy is
        made anyway (a cast dtype); True = a prepacked copy in the model's dtype too (same numbers,
        faster, needs `refresh_weights()`).
    kv_dtype: the KV cache's dtype. None = the compute dtype (bf16 K/V for bf16 compute on a CPU where the
        decode-attention kernel builds, fp32 where it does not); "float32" keeps K/V exact.
    fused: decode's elementwise ops as fused C++ calls (rollout/csrc/decode_fused.cpp). None = where the
        numbers are not the model's own anyway (a cast dtype, int8); True = also in the model's dtype; False = off.
    """

    def __init__(self, model, tokenizer, dtype: torch.dtype | str | None = None, max_batch_size: int = 64,
                 quantize: str | None = None, prepack: bool | None = None, kv_dtype: torch.dtype | str | None = None,
                 fused: bool | None = None):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model, self.tokenizer, self.max_batch_size = model, tokenizer, max_batch_size
        self.forward = DecoderForward(model, dtype=dtype, quantize=quantize, prepack=prepack, kv_dtype=kv_dtype,
                                      fused=fused)
        self.eos_ids = eos_ids_of(tokenizer, model)

    @property
    def context_length(self) -> int:
        """The longest prompt + generation a row may have."""
        return self.forward.max_positions

    def refresh_weights(self) -> None:
        """Re-copy the model's weights; needed only with a cast `dtype` or `quantize`."""
        self.forward.refresh_weights()

    @torch.inference_mode()
    def session(self, num_slots: int | None = None, max_len: int | None = None) -> Session:
        """An empty running batch (see session.py). It reads the weights now.

        num_slots: rows running at once (default `max_batch_size`); more rows wait for a free slot.
        max_len: positions to allocate up front; otherwise the cache grows as admitted rows need it.
        """
        num_slots = num_slots or self.max_batch_size
        if max_len is not None:
            self.forward.check_length(max_len)
        runner = NativeRunner(self.forward, num_slots, self.context_length)
        if max_len is not None:
            runner.reserve(num_slots, max_len)
        return Session(Scheduler(num_slots, self.eos_ids, self.tokenizer), runner)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams,
                 seeds: Sequence[int] | None = None) -> list[Completion]:
        if not prompts:
            return []
        check_seeds(prompts, seeds)
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        rows = [Row(p, params, seeds[i] if seeds is not None else None) for i, p in enumerate(prompts)]
        session = self.session(min(self.max_batch_size, len(rows)), max(r.max_length for r in rows))
        for row in rows:
            session.add(row)
        session.run()
        return [finish_completion(r.prompt, r.tokens, r.logprobs if params.logprobs else None, self.tokenizer,
                                  self.eos_ids, params)
                for r in rows]


class NativeRunner:
    """The compute half of a session: its KV cache, the weights it read, one prefill or decode step."""

    def __init__(self, forward: DecoderForward, max_slots: int, max_len_limit: int):
        self.fwd, self.max_slots, self.max_len_limit = forward, max_slots, max_len_limit
        self.weights: ModelWeights = forward.weights()
        self.cache: KVCache | None = None
        self.ropes: dict = {}  # {layer type: (cos, sin)}, each (Tmax, Dr): RoPE tables as long as the cache
        self.rope_len = 0

    def check_length(self, total_len: int) -> None:
        self.fwd.check_length(total_len)

    @torch.inference_mode()
    def reserve(self, num_slots: int, max_len: int) -> None:
        cache = self.cache
        if cache is None:
            self.cache = self.fwd.new_cache(num_slots, max_len)
        elif num_slots > cache.num_slots or max_len > cache.max_len:
            # Grow geometrically, so rows joining one by one copy the cache O(log n) times.
            if num_slots > cache.num_slots:
                num_slots = max(num_slots, min(2 * cache.num_slots, self.max_slots))
            if max_len > cache.max_len:
                max_len = max(max_len, min(2 * cache.max_len, self.max_len_limit))
            self.cache = cache.grown(num_slots, max_len)
        if self.rope_len < self.cache.max_len:
            self.ropes, self.rope_len = self.fwd.rope_tables(self.cache.max_len), self.cache.max_len

    @torch.inference_mode()
    def move(self, move: SlotMove) -> None:
        device = self.fwd.device
        self.cache.move_slots(torch.tensor(move.src, device=device), torch.tensor(move.dst, device=device), move.width)

    @torch.inference_mode()
    def prefill(self, rows: list[Row], first_slot: int) -> tuple[list[int], list[float] | None]:
        """Prefill newcomers into slots first_slot.. and sample their first token.

        Compute is spent once per distinct prompt (a GRPO group of G copies, or a request's n
        choices, costs one prefill) and once on the prefix all of them share (chat template, system
        prompt, worked examples: in GRPO usually most of the prompt).
        """
        device = self.fwd.device
        slots = torch.arange(first_slot, first_slot + len(rows), device=device)
        distinct: dict[tuple[int, ...], int] = {}
        prompt_of = [distinct.setdefault(tuple(r.prompt), len(distinct)) for r in rows]  # rows[j] has prompt_of[j]
        unique = list(distinct)
        # Leave every prompt at least one token of its own: its logits come from its last position.
        shared = min(common_prefix_len(unique), min(len(p) for p in unique) - 1) if len(unique) > 1 else 0
        if shared < MIN_SHARED_PREFIX:
            shared = 0
        if shared:  # one row computes the prefix; its K/V is written into every new slot
            self._prefill([unique[0][:shared]], slots, torch.zeros_like(slots), start=0)
        # Sorted by length, chunks hold prompts of similar length: little padding computed.
        order = sorted(range(len(unique)), key=lambda u: len(unique[u]))
        width = max(len(p) for p in unique) - shared
        per_chunk = max(1, PREFILL_TOKEN_BUDGET // width)
        chunk_logits = {}
        for begin in range(0, len(order), per_chunk):
            chunk = order[begin:begin + per_chunk]
            position = {u: i for i, u in enumerate(chunk)}
            members = [j for j, u in enumerate(prompt_of) if u in position]
            chunk_rows = torch.tensor([position[prompt_of[j]] for j in members], device=device)
            out = self._prefill([unique[u][shared:] for u in chunk], slots[members], chunk_rows, start=shared)
            chunk_logits.update({u: out[i] for i, u in enumerate(chunk)})
        return self._sample(rows, torch.stack([chunk_logits[u] for u in prompt_of]))  # (len(rows), V)

    def _prefill(self, prompts: list[list[int]], slots: torch.Tensor, rows: torch.Tensor, start: int) -> torch.Tensor:
        """Right-pad `prompts` into one batch and prefill it; returns (len(prompts), V) last-token logits."""
        device = self.fwd.device
        tokens = torch.zeros((len(prompts), max(len(p) for p in prompts)), dtype=torch.long)  # (U, Tp)
        for i, p in enumerate(prompts):
            tokens[i, :len(p)] = torch.tensor(p)
        lengths = torch.tensor([len(p) for p in prompts], device=device)
        return self.fwd.prefill(self.weights, tokens.to(device), lengths, self.cache, slots, rows,
                                self.ropes, start=start)

    @torch.inference_mode()
    def decode(self, rows: list[Row]) -> tuple[list[int], list[float] | None]:
        device = self.fwd.device
        tokens = torch.tensor([r.tokens[-1] for r in rows], device=device)  # (B,)
        positions = torch.tensor([r.length - 1 for r in rows], device=device)  # (B,)
        return self._sample(rows, self.fwd.decode(self.weights, tokens, positions, self.cache, self.ropes))

    def _sample(self, rows: list[Row], logits: torch.Tensor) -> tuple[list[int], list[float] | None]:
        """logits: (B, V). Each row samples with its own params and generator; rows that share
        params are sampled in one call (in `generate`, all of them)."""
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(rows):
            p = r.params
            groups.setdefault((p.temperature, p.top_k, p.top_p, p.logprobs), []).append(i)
        if len(groups) == 1:
            tokens, logprobs = next_tokens(logits, rows[0].params, [r.generator for r in rows])
            return tokens.tolist(), logprobs.tolist() if logprobs is not None else None
        out_tokens, out_logprobs = [0] * len(rows), [math.nan] * len(rows)
        for members in groups.values():
            generators = [rows[i].generator for i in members]
            tokens, logprobs = next_tokens(logits[members], rows[members[0]].params, generators)
            for j, i in enumerate(members):
                out_tokens[i] = int(tokens[j])
                if logprobs is not None:
                    out_logprobs[i] = float(logprobs[j])
        return out_tokens, out_logprobs if any(r.params.logprobs for r in rows) else None
