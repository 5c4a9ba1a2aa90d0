"""GRPO's math as pure tensor functions (R1_SYSTEM.md §1): advantages, the k3 KL, the clipped loss.

Loss modes differ only in how per-token terms are averaged:
  grpo    : mean over each sequence's tokens, then mean over sequences (the paper's 1/G sum 1/|o_i| sum_t)
  dr_grpo : sum over all tokens / (num sequences * max completion length): no length bias (Dr. GRPO)
  dapo    : sum over all tokens / number of tokens in the whole batch (DAPO's token-level average)
Normalisers are passed in for the *whole* batch so that micro-batches (and ranks) add up to exactly
the full-batch loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from r1lab.rl.logprobs import token_logprobs_and_entropy  # noqa: F401  (its old import path)

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")


def group_advantages(rewards: Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> Tensor:
    """(r_i - mean(group)) / (std(group) + eps) for consecutive groups of `group_size`.

    std is the unbiased sample std (as TRL); a group whose rewards are all equal gets advantage 0.
    """
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} entries, "
                         f"got shape {tuple(rewards.shape)}")
    grouped = rewards.float().view(-1, group_size)  # (P, G)
    adv = grouped - grouped.mean(dim=1, keepdim=True)
    if scale and group_size > 1:
        adv = adv / (grouped.std(dim=1, keepdim=True) + eps)
    return adv.view(-1)


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Elementwise k3 estimator of KL(pi || pi_ref): r - log r - 1 with r = pi_ref / pi. Always >= 0."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1.0


@dataclass
class LossNormalizers:
    """Whole-batch counts; micro-batch losses divided by these sum to the full-batch loss."""

    num_sequences: int
    num_tokens: int
    max_length: int  # dr_grpo's constant denominator: the max completion length allowed


def policy_loss(
    logp: Tensor,  # (B, T) log pi_theta of the sampled tokens
    old_logp: Tensor | None,  # (B, T) log pi_old; None means pi_old = pi_theta (mu = 1): ratio 1
    advantages: Tensor,  # (B,)
    mask: Tensor,  # (B, T) 1 for completion tokens that count
    *,
    loss_type: str = "grpo",
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    beta: float = 0.0,
    ref_logp: Tensor | None = None,  # (B, T), needed when beta > 0
    norm: LossNormalizers | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The negated GRPO objective (to minimise) and detached statistics."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if beta > 0 and ref_logp is None:
        raise ValueError("beta > 0 needs ref_logp")
    mask = mask.to(logp.dtype)
    if old_logp is None:
        old_logp = logp.detach()
    ratio = torch.exp(logp - old_logp)  # (B, T)
    adv = advantages.to(logp.dtype).unsqueeze(1)  # (B, 1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    per_token = -torch.minimum(unclipped, clipped)  # (B, T)
    kl = None
    if beta > 0:
        kl = kl_k3(logp, ref_logp)
        per_token = per_token + beta * kl

    if norm is None:
        norm = LossNormalizers(logp.shape[0], int(mask.sum().item()), logp.shape[1])
    if loss_type == "grpo":
        per_seq = (per_token * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B,)
        loss = per_seq.sum() / max(norm.num_sequences, 1)
    elif loss_type == "dr_grpo":
        loss = (per_token * mask).sum() / max(norm.num_sequences * norm.max_length, 1)
    else:  # dapo
        loss = (per_token * mask).sum() / max(norm.num_tokens, 1)

    with torch.no_grad():
        tokens = mask.sum().clamp(min=1.0)
        was_clipped = ((ratio < 1.0 - eps_low) & (adv < 0)) | ((ratio > 1.0 + eps_high) & (adv > 0))
        stats = {
            "clip_fraction": float((was_clipped.to(mask.dtype) * mask).sum() / tokens),
            "ratio_mean": float((ratio * mask).sum() / tokens),
            "kl": float((kl * mask).sum() / tokens) if kl is not None else 0.0,
            "tokens": float(mask.sum()),
        }
    return loss, stats
