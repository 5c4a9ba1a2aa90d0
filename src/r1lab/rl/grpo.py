"""GRPO's math as pure tensor functions (R1_SYSTEM.md §1, docs/rl.md): the policy losses and KL estimators.

Each loss type is a per-token term and a way to average it:
  grpo    : PPO-clipped token ratio; mean over each sequence's tokens, then over sequences (1/G sum 1/|o_i| sum_t)
  dr_grpo : as grpo, summed over all tokens / (num sequences * max completion length): no length bias (Dr. GRPO)
  dapo    : as grpo, summed over all tokens / number of tokens in the whole batch (DAPO's token-level mean)
  gspo    : one ratio per sequence, exp(mean_t log(pi / pi_old)), clipped per sequence; sequence mean (GSPO)
  cispo   : sg(clip(r, 1 - eps_low, 1 + eps_high)) * A * log pi: clips the weight, never the gradient; token mean
  sapo    : a soft gate sigmoid(tau (r - 1)) * 4 / tau instead of the hard clip (tau per advantage sign); sequence mean
Normalisers are passed in for the *whole* batch so that micro-batches (and ranks) add up to exactly
the full-batch loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from r1lab.rl.advantages import group_advantages  # noqa: F401  (its old import path)
from r1lab.rl.logprobs import token_logprobs_and_entropy  # noqa: F401  (its old import path)

# how each loss type averages its per-token terms: per sequence, by a constant, or per token
AGGREGATION = {"grpo": "sequence", "dr_grpo": "max_length", "dapo": "token",
               "gspo": "sequence", "cispo": "token", "sapo": "sequence"}
LOSS_TYPES = tuple(AGGREGATION)
KL_ESTIMATORS = ("k1", "k2", "k3", "k3_ratio")


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Elementwise k3 estimator of KL(pi || pi_ref): r - log r - 1 with r = pi_ref / pi. Always >= 0."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1.0


def kl_estimate(logp: Tensor, ref_logp: Tensor, estimator: str = "k3", ratio: Tensor | None = None) -> Tensor:
    """Per-token estimate of KL(pi || pi_ref) on tokens sampled from pi_old, as a loss term (docs/rl.md):
    k1 = log(pi / pi_ref)         its gradient is 0 in expectation: a value, not a penalty
    k2 = (log(pi / pi_ref))^2 / 2 gradient = grad KL(pi || pi_ref), the reverse KL
    k3 = r - log r - 1           gradient = grad KL(pi_ref || pi), the forward KL (what GRPO's paper used)
    k3_ratio = k3 * pi / pi_old  TRL's use_bias_correction_kl: gradient = grad KL(pi || pi_ref)
    """
    if estimator == "k1":
        return logp - ref_logp
    if estimator == "k2":
        return 0.5 * (logp - ref_logp) ** 2
    if estimator == "k3":
        return kl_k3(logp, ref_logp)
    if estimator == "k3_ratio":
        return kl_k3(logp, ref_logp) * ratio
    raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")


@dataclass
class LossNormalizers:
    """Whole-batch counts; micro-batch losses divided by these sum to the full-batch loss."""

    num_sequences: int
    num_tokens: int
    max_length: int  # dr_grpo's constant denominator: the max completion length allowed


def _policy_terms(loss_type: str, logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, eps_low: float,
                  eps_high: float, sapo_tau: tuple[float, float]) -> tuple[Tensor, Tensor, Tensor]:
    """The loss type's per-token policy term (B, T), the token ratio pi / pi_old (B, T), and where the clip
    took the gradient away (B, T) bool. adv is (B, 1)."""
    ratio = torch.exp(logp - old_logp)  # (B, T)
    low, high = 1.0 - eps_low, 1.0 + eps_high
    if loss_type == "gspo":  # one ratio per sequence: the geometric mean of its token ratios
        seq_log = ((logp - old_logp) * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1.0)
        seq_ratio = torch.exp(seq_log)  # (B, 1)
        terms = -torch.minimum(seq_ratio * adv, seq_ratio.clamp(low, high) * adv).expand_as(logp)
        clipped = ((seq_ratio < low) & (adv < 0)) | ((seq_ratio > high) & (adv > 0))
        return terms, ratio, clipped.expand_as(logp)
    if loss_type == "cispo":  # the clipped ratio only weighs the REINFORCE term: every token keeps a gradient
        weight = ratio.clamp(low, high).detach()
        return -weight * adv * logp, ratio, (ratio < low) | (ratio > high)
    if loss_type == "sapo":
        tau = torch.where(adv > 0, sapo_tau[0], sapo_tau[1]).to(logp.dtype)  # (B, 1)
        return -torch.sigmoid(tau * (ratio - 1.0)) * (4.0 / tau) * adv, ratio, torch.zeros_like(mask, dtype=torch.bool)
    terms = -torch.minimum(ratio * adv, ratio.clamp(low, high) * adv)
    return terms, ratio, ((ratio < low) & (adv < 0)) | ((ratio > high) & (adv > 0))


def _aggregate(per_token: Tensor, mask: Tensor, how: str, norm: LossNormalizers) -> Tensor:
    if how == "sequence":
        per_seq = (per_token * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B,)
        return per_seq.sum() / max(norm.num_sequences, 1)
    if how == "max_length":
        return (per_token * mask).sum() / max(norm.num_sequences * norm.max_length, 1)
    return (per_token * mask).sum() / max(norm.num_tokens, 1)


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
    norm: LossNormalizers | None = None,  # needed for dr_grpo (its max_length)
    kl_estimator: str = "k3",
    sapo_tau: tuple[float, float] = (1.0, 1.05),  # SAPO's gate temperatures for A > 0 and A <= 0
    policy_mask: Tensor | None = None,  # (B, T) 0 drops a token's policy term (top-entropy tokens only)
    is_weights: Tensor | None = None,  # (B, T) or (B, 1) rollout-correction weights on the policy term
    entropy: Tensor | None = None,  # (B, T) differentiable entropy, for the bonus
    entropy_coef: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """The negated objective (to minimise) and detached statistics."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if beta > 0 and ref_logp is None:
        raise ValueError("beta > 0 needs ref_logp")
    if entropy_coef and entropy is None:
        raise ValueError("entropy_coef needs entropy")
    if norm is None:
        if loss_type == "dr_grpo":
            raise ValueError("loss_type='dr_grpo' needs norm=LossNormalizers(..., max_length=the maximum completion "
                             f"length): the padded width ({logp.shape[1]}) is not its constant denominator")
        norm = LossNormalizers(logp.shape[0], int(mask.sum().item()), logp.shape[1])
    mask = mask.to(logp.dtype)
    if old_logp is None:
        old_logp = logp.detach()
    adv = advantages.to(logp.dtype).unsqueeze(1)  # (B, 1)
    per_token, ratio, clipped = _policy_terms(loss_type, logp, old_logp, adv, mask, eps_low, eps_high, sapo_tau)
    if policy_mask is not None:
        per_token = per_token * policy_mask
    if is_weights is not None:
        per_token = per_token * is_weights.detach()
    kl = None
    if beta > 0:
        kl = kl_estimate(logp, ref_logp, kl_estimator, ratio)
        per_token = per_token + beta * kl
    if entropy_coef:
        per_token = per_token - entropy_coef * entropy
    loss = _aggregate(per_token, mask, AGGREGATION[loss_type], norm)

    with torch.no_grad():
        tokens = mask.sum().clamp(min=1.0)
        stats = {
            "clip_fraction": float((clipped.to(mask.dtype) * mask).sum() / tokens),
            "ratio_mean": float((ratio * mask).sum() / tokens),
            "kl": float((kl * mask).sum() / tokens) if kl is not None else 0.0,
            "tokens": float(mask.sum()),
        }
    return loss, stats
