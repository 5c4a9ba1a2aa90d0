"""The native rollout engine: continuous batching over a slot KV cache, with a hand-written forward.

Scheduling (this file) decides which sequences run; compute (llama_forward.py) runs one prefill or
one decode step for them. Each loop iteration: admit waiting prompts into free slots (one batched
prefill, each distinct prompt computed once, so a GRPO group of G copies costs one prefill), decode
one token for every running sequence, then retire the finished ones so they stop costing compute.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import torch

from r1lab.rollout.base import Completion, SamplingParams
from r1lab.rollout.finish import eos_ids_of, finish_completion, stops_in
from r1lab.rollout.llama_forward import LlamaFamilyForward, ModelWeights
from r1lab.rollout.sampling import next_tokens

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


@dataclass
class Request:
    """One request while it runs: its prompt, what it generated so far, and its own RNG."""
    index: int
    prompt: list[int]
    generator: torch.Generator
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.tokens)


class NativeEngine:
    """Fast CPU rollouts for Llama / Qwen2 / Mistral models; implements the `Engine` protocol.

    model: a HF decoder-only causal LM. Weights are read from it on every `generate` call, so
        in-place updates by a trainer are seen with no re-sync (unless `dtype` forces a copy).
    tokenizer: used for EOS ids, stop strings and decoding the completion text.
    dtype: compute dtype. None = the model's dtype, sharing its tensors. A different dtype (e.g.
        torch.bfloat16 for an fp32 policy) keeps a converted copy: call `refresh_weights()` after
        each optimizer step. On AVX2-only CPUs bf16 is slower (docs/rollout.md); the default is right.
    max_batch_size: sequences decoded together; more prompts than this are admitted as others finish.
    quantize: None (default, exact) or "int8": an int8 copy of every Linear (fbgemm), ~2x faster
        decode on AVX2 CPUs but sampling from a slightly perturbed policy; needs `refresh_weights()`.
    """

    def __init__(self, model, tokenizer, dtype: torch.dtype | None = None, max_batch_size: int = 64,
                 quantize: str | None = None):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model, self.tokenizer, self.max_batch_size = model, tokenizer, max_batch_size
        self.forward = LlamaFamilyForward(model, dtype=dtype, quantize=quantize)
        self.eos_ids = eos_ids_of(tokenizer, model)

    def refresh_weights(self) -> None:
        """Re-copy the model's weights; needed only with a cast `dtype` or `quantize`."""
        self.forward.refresh_weights()

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams,
                 seeds: Sequence[int] | None = None) -> list[Completion]:
        if not prompts:
            return []
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts")
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        requests = [Request(i, list(map(int, p)), self._generator(seeds[i] if seeds is not None else None))
                    for i, p in enumerate(prompts)]
        max_len = max(len(p) for p in prompts) + params.max_new_tokens
        self.forward.check_length(max_len)
        run = _Run(self, params, max_len, num_slots=min(self.max_batch_size, len(prompts)))
        finished = run.loop(deque(requests))
        return [finish_completion(r.prompt, r.tokens, r.logprobs if params.logprobs else None, self.tokenizer,
                                  self.eos_ids, params.stop, params.max_new_tokens)
                for r in sorted(finished, key=lambda r: r.index)]

    def _generator(self, seed: int | None) -> torch.Generator:
        generator = torch.Generator(device="cpu")
        # Unseeded rows still follow torch.manual_seed, so whole runs stay reproducible.
        generator.manual_seed(int(seed) if seed is not None else int(torch.randint(2**62, ())))
        return generator


class _Run:
    """State of one `generate` call: the cache, which request sits in which slot, and the loop."""

    def __init__(self, engine: NativeEngine, params: SamplingParams, max_len: int, num_slots: int):
        self.engine, self.params, self.fwd = engine, params, engine.forward
        self.weights: ModelWeights = self.fwd.weights()
        self.cache = self.fwd.new_cache(num_slots, max_len)
        self.cos, self.sin = self.fwd.rope_tables(max_len)  # (Tmax, D)
        self.running: list[Request] = []  # running[s] occupies cache slot s
        self.stop_window = max((len(s) for s in params.stop), default=0) + 1  # tokens to re-decode

    def loop(self, waiting: deque[Request]) -> list[Request]:
        done: list[Request] = []
        while waiting or self.running:
            free = self.cache.num_slots - len(self.running)
            if waiting and free:
                self._admit([waiting.popleft() for _ in range(min(free, len(waiting)))])
            else:
                self._decode()
            done += self._retire_finished()
        return done

    def _admit(self, new: list[Request]) -> None:
        """Prefill newcomers into the next free slots and sample their first token.

        Compute is spent once per distinct prompt, and once on the prefix all of them share (chat
        template, system prompt, worked examples: in GRPO usually most of the prompt).
        """
        device = self.fwd.device
        slots = torch.arange(len(self.running), len(self.running) + len(new), device=device)
        self.running += new
        distinct: dict[tuple[int, ...], int] = {}
        rows = [distinct.setdefault(tuple(r.prompt), len(distinct)) for r in new]  # new[j] is prompt rows[j]
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
            members = [j for j, u in enumerate(rows) if u in position]
            chunk_rows = torch.tensor([position[rows[j]] for j in members], device=device)
            out = self._prefill([unique[u][shared:] for u in chunk], slots[members], chunk_rows, start=shared)
            chunk_logits.update({u: out[i] for i, u in enumerate(chunk)})
        logits = torch.stack([chunk_logits[u] for u in rows])  # (len(new), V)
        self._append(new, logits)

    def _prefill(self, prompts: list[list[int]], slots: torch.Tensor, rows: torch.Tensor, start: int) -> torch.Tensor:
        """Right-pad `prompts` into one batch and prefill it; returns (len(prompts), V) last-token logits."""
        device = self.fwd.device
        tokens = torch.zeros((len(prompts), max(len(p) for p in prompts)), dtype=torch.long)  # (U, Tp)
        for i, p in enumerate(prompts):
            tokens[i, :len(p)] = torch.tensor(p)
        lengths = torch.tensor([len(p) for p in prompts], device=device)
        return self.fwd.prefill(self.weights, tokens.to(device), lengths, self.cache, slots, rows,
                                self.cos, self.sin, start=start)

    def _decode(self) -> None:
        device = self.fwd.device
        tokens = torch.tensor([r.tokens[-1] for r in self.running], device=device)  # (B,)
        positions = torch.tensor([r.length - 1 for r in self.running], device=device)  # (B,)
        logits = self.fwd.decode(self.weights, tokens, positions, self.cache, self.cos, self.sin)
        self._append(self.running, logits)

    def _append(self, seqs: list[Request], logits: torch.Tensor) -> None:
        tokens, logprobs = next_tokens(logits, self.params, [r.generator for r in seqs])
        tokens = tokens.tolist()
        logprobs = logprobs.tolist() if logprobs is not None else None
        for i, r in enumerate(seqs):
            r.tokens.append(tokens[i])
            if logprobs is not None:
                r.logprobs.append(logprobs[i])

    def _is_finished(self, r: Request) -> bool:
        if len(r.tokens) >= self.params.max_new_tokens or r.tokens[-1] in self.engine.eos_ids:
            return True
        if self.params.stop:
            # Only the tail can hold a stop string that was not there a token ago. A missed stop
            # would only cost compute: finish_completion still cuts the text exactly.
            tail = self.engine.tokenizer.decode(r.tokens[-self.stop_window:], skip_special_tokens=True)
            return stops_in(tail, self.params.stop)
        return False

    def _retire_finished(self) -> list[Request]:
        """Drop finished rows; survivors from the tail move into the holes so slots stay a prefix."""
        finished = [s for s, r in enumerate(self.running) if self._is_finished(r)]
        if not finished:
            return []
        done = [self.running[s] for s in finished]
        keep = len(self.running) - len(finished)
        holes = [s for s in finished if s < keep]
        movers = [s for s in range(keep, len(self.running)) if s not in set(finished)]
        if holes:
            width = max(self.running[s].length for s in movers)
            device = self.fwd.device
            self.cache.move_slots(torch.tensor(movers, device=device), torch.tensor(holes, device=device), width)
            for hole, mover in zip(holes, movers):
                self.running[hole] = self.running[mover]
        del self.running[keep:]
        return done
