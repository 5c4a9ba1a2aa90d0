"""Next-token choice from logits: greedy or temperature / top-k / top-p sampling with per-row RNG.

Each row draws one uniform number from its own torch.Generator and inverts its own CDF, so a
row's token depends only on its logits and its seed, never on the other rows in the batch.
Filters follow transformers' order and tie rules (temperature, then top-k, then top-p).
Where it builds, r1lab's sampling kernel (csrc/sampling.cpp) does the softmax and the draw in one pass per
row, by the same rule (probabilities to ~2e-7, the cumulative mass in float64); torch ops otherwise.
"""
from __future__ import annotations

from typing import Sequence

import torch

from r1lab.rollout import decode_kernel
from r1lab.rollout.base import SamplingParams


def filter_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """scores: (B, V). Keeps every token scoring at least the k-th best (ties kept, like HF)."""
    if k <= 0 or k >= scores.shape[-1]:
        return scores
    kth = torch.topk(scores, k, dim=-1).values[:, -1:]  # (B, 1)
    return scores.masked_fill(scores < kth, float("-inf"))


def filter_top_p(scores: torch.Tensor, p: float) -> torch.Tensor:
    """scores: (B, V). Keeps the smallest high-probability set whose mass reaches p (HF's rule)."""
    if p >= 1.0:
        return scores
    sorted_scores, order = torch.sort(scores, dim=-1)  # ascending, (B, V)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative <= (1 - p)
    drop_sorted[:, -1] = False  # always keep the most likely token
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return scores.masked_fill(drop, float("-inf"))


def row_uniforms(generators: Sequence[torch.Generator]) -> torch.Tensor:
    """(B,) float64 uniforms, row b's from generators[b]: one draw per row and token on either path."""
    return torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])


def sample_rows(probs: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """probs: (B, V), rows need not be normalised. Returns (B,) token ids, row b driven by generators[b]."""
    uniforms = row_uniforms(generators)
    cdf = probs.double().cumsum(dim=-1)  # (B, V); float64 so a 50k-token cumsum keeps its tail
    targets = (uniforms * cdf[:, -1]).unsqueeze(-1).to(cdf.device)  # (B, 1)
    picks = torch.searchsorted(cdf, targets, right=True).squeeze(-1)
    return picks.clamp_(max=probs.shape[-1] - 1)


def next_tokens(logits: torch.Tensor, params: SamplingParams, generators: Sequence[torch.Generator]
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """logits: (B, V). Returns tokens (B,) and, if params.logprobs, their log-probs (B,) under the
    full softmax(logits / T) before top-k/top-p filtering (T = 1 for greedy), as hf.py reports them."""
    greedy = params.temperature == 0
    readable = logits.device.type == "cpu" and logits.dtype in (torch.float32, torch.bfloat16)
    kernel = decode_kernel.sampler() if readable and not greedy else None
    unfiltered = not 0 < params.top_k < logits.shape[-1] and params.top_p >= 1.0
    if kernel is not None and unfiltered:  # softmax(logits / T), draw and log-prob in one pass
        tokens, logprobs = kernel(logits, 1.0 / params.temperature, row_uniforms(generators))
        return tokens, logprobs if params.logprobs else None
    logits = logits.float()
    scores = logits if greedy else logits / params.temperature
    if greedy:
        tokens = scores.argmax(dim=-1)
    else:
        filtered = filter_top_p(filter_top_k(scores, params.top_k), params.top_p)
        if kernel is not None:
            tokens = kernel(filtered, 1.0, row_uniforms(generators))[0]
        else:
            tokens = sample_rows(filtered.softmax(dim=-1), generators)
    if not params.logprobs:
        return tokens, None
    logprobs = scores.log_softmax(dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
    return tokens, logprobs
