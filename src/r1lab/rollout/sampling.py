"""Next-token choice from logits: greedy or temperature / top-k / top-p sampling with per-row RNG.

Each row draws one uniform number from its own torch.Generator and inverts its own CDF, so a
row's token depends only on its logits and its seed, never on the other rows in the batch.
Filters follow transformers' order and tie rules (temperature, then top-k, then top-p).
"""
from __future__ import annotations

from typing import Sequence

import torch

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


def sample_rows(probs: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """probs: (B, V), rows need not be normalised. Returns (B,) token ids, row b driven by generators[b]."""
    uniforms = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])  # (B,)
    cdf = probs.double().cumsum(dim=-1)  # (B, V); float64 so a 50k-token cumsum keeps its tail
    targets = (uniforms * cdf[:, -1]).unsqueeze(-1).to(cdf.device)  # (B, 1)
    picks = torch.searchsorted(cdf, targets, right=True).squeeze(-1)
    return picks.clamp_(max=probs.shape[-1] - 1)


def next_tokens(logits: torch.Tensor, params: SamplingParams, generators: Sequence[torch.Generator]
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """logits: (B, V). Returns tokens (B,) and, if params.logprobs, their log-probs (B,) under the
    full softmax(logits / T) before top-k/top-p filtering (T = 1 for greedy), as hf.py reports them."""
    logits = logits.float()
    greedy = params.temperature == 0
    scores = logits if greedy else logits / params.temperature
    if greedy:
        tokens = scores.argmax(dim=-1)
    else:
        filtered = filter_top_p(filter_top_k(scores, params.top_k), params.top_p)
        tokens = sample_rows(filtered.softmax(dim=-1), generators)
    if not params.logprobs:
        return tokens, None
    logprobs = scores.log_softmax(dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
    return tokens, logprobs
