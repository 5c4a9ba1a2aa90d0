"""Advantages from one step's rewards: a baseline per group, then an optional scale (docs/rl.md).

  group        A_i = r_i - mean(group)                       (GRPO)
  rloo         A_i = r_i - mean(group without i)             (RLOO: leave-one-out; = G/(G-1) * the group version)
  reinforce_pp A_i = (r_i - mean(group)) / std_batch(r - mean(group))   (REINFORCE++ with a group baseline, verl)
scale (group and rloo): group = / group std (GRPO), batch = / std of the whole batch's rewards (TRL's
scale_rewards="batch"), none = no division (Dr. GRPO). Rewards must be the *whole* batch (all ranks) for
batch scaling, so the trainer computes advantages once per step on the gathered rewards.
"""
from __future__ import annotations

from torch import Tensor

ADVANTAGE_ESTIMATORS = ("group", "rloo", "reinforce_pp")
REWARD_SCALES = ("group", "batch", "none")


def reward_scale(value: str | bool) -> str:
    """scale_rewards as one of REWARD_SCALES; true/false (the old form) mean group/none."""
    if value is True:
        return "group"
    if value is False:
        return "none"
    return value


def compute_advantages(rewards: Tensor, group_size: int, estimator: str = "group", scale: str | bool = "group",
                       eps: float = 1e-4) -> Tensor:
    """(N,) rewards in consecutive groups of `group_size` -> (N,) advantages. std is the unbiased sample std
    (as TRL); a group whose rewards are all equal gets advantage 0."""
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} entries, "
                         f"got shape {tuple(rewards.shape)}")
    if estimator not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"advantage estimator must be one of {ADVANTAGE_ESTIMATORS}, got {estimator!r}")
    scale = reward_scale(scale)
    if scale not in REWARD_SCALES:
        raise ValueError(f"scale must be one of {REWARD_SCALES} (or true/false), got {scale!r}")
    grouped = rewards.float().view(-1, group_size)  # (P, G)
    if estimator == "rloo":
        if group_size < 2:
            raise ValueError("the rloo advantage needs group_size >= 2 (a leave-one-out mean of the others)")
        baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    else:
        baseline = grouped.mean(dim=1, keepdim=True)
    adv = grouped - baseline
    if estimator == "reinforce_pp":  # whiten over the batch (its mean is already 0: every group sums to 0)
        return (adv / (adv.std() + eps)).view(-1) if adv.numel() > 1 else adv.view(-1)
    if scale == "group" and group_size > 1:
        adv = adv / (grouped.std(dim=1, keepdim=True) + eps)
    elif scale == "batch" and rewards.numel() > 1:
        adv = adv / (rewards.float().std() + eps)
    return adv.view(-1)


def group_advantages(rewards: Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> Tensor:
    """(r_i - mean(group)) / (std(group) + eps) for consecutive groups of `group_size` (scale=False: no division)."""
    return compute_advantages(rewards, group_size, "group", "group" if scale else "none", eps)
