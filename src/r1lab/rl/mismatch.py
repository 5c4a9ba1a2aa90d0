"""The rollout engine samples from its own copy of the weights (bf16, prepacked, another kernel); the trainer
scores the same tokens with its fp32 master weights. These functions measure that gap and correct for it
(docs/rl.md), and pick the highest-entropy tokens; all pure, on (B, T) tensors.

With d = log pi_trainer(o_t) - log pi_sampler(o_t) at sampling time (pi_old = the trainer's policy):
  token level    w_t = exp(d_t)                 sequence level  w_i = exp(sum_t d_t)
  tis (truncated importance sampling, Yao et al. 2025):  w <- min(w, cap)
  mis (masked importance sampling, TRL's *_mask modes):  w <- w if w <= cap else 0
The policy term of each token is multiplied by its w (detached), as TRL's vllm_importance_sampling_correction.
"""
from __future__ import annotations

import torch
from torch import Tensor

ROLLOUT_CORRECTIONS = ("none", "tis", "mis")
CORRECTION_LEVELS = ("token", "sequence")


def mismatch_sums(trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor) -> dict[str, float]:
    """Sums over real tokens (add them across micro-batches and ranks, then divide by "tokens"):
    |d|, the k3 estimate of KL(pi_sampler || pi_trainer) on the sampler's tokens (r - 1 - log r,
    r = pi_trainer / pi_sampler), and the largest token ratio r (a max, not a sum)."""
    with torch.no_grad():
        mask = mask.to(trainer_logp.dtype)
        d = (trainer_logp - sampler_logp.to(trainer_logp.dtype)) * mask
        k3 = (torch.exp(d) - 1.0 - d) * mask
        real = mask > 0
        return {"abs_diff": float(d.abs().sum()), "k3": float(k3.sum()), "tokens": float(mask.sum()),
                "max_ratio": float(torch.exp(d[real]).max()) if real.any() else 0.0}


def rollout_weights(trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, mode: str, level: str = "token",
                    cap: float = 2.0) -> Tensor:
    """The detached correction weights: (B, T) at token level, (B, 1) at sequence level."""
    if mode not in ("tis", "mis"):
        raise ValueError(f"rollout correction mode must be tis or mis, got {mode!r}")
    if level not in CORRECTION_LEVELS:
        raise ValueError(f"rollout correction level must be one of {CORRECTION_LEVELS}, got {level!r}")
    with torch.no_grad():
        d = (trainer_logp - sampler_logp.to(trainer_logp.dtype)) * mask.to(trainer_logp.dtype)
        if level == "sequence":
            d = d.sum(1, keepdim=True)
        w = torch.exp(d)
        return w.clamp(max=cap) if mode == "tis" else w.masked_fill(w > cap, 0.0)


def entropy_threshold(entropies: list[float], quantile: float) -> float:
    """The entropy above which the top `quantile` fraction of tokens lies (TRL's top_entropy_quantile):
    the (1 - quantile) quantile of the step's token entropies."""
    if not entropies or quantile >= 1.0:
        return -float("inf")
    return float(torch.quantile(torch.tensor(entropies, dtype=torch.float64), 1.0 - quantile))


def high_entropy_mask(entropy: Tensor, mask: Tensor, threshold: float) -> Tensor:
    """1.0 on real tokens whose entropy is at least `threshold`, else 0.0: (B, T)."""
    return ((entropy >= threshold) & (mask > 0)).to(mask.dtype)
