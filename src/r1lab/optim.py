"""The optimiser and learning-rate schedule every trainer shares (GRPO, SFT)."""
from __future__ import annotations

import math

import torch

SCHEDULES = ("constant", "linear", "cosine")


def lr_factor(schedule: str, total_updates: int, warmup_updates: int = 0):
    """LambdaLR factor: linear warmup, then constant, linear decay to 0 or cosine decay to 0."""
    if schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    total = max(total_updates, 1)

    def factor(update: int) -> float:
        if warmup_updates and update < warmup_updates:
            return (update + 1) / warmup_updates
        progress = (update - warmup_updates) / max(total - warmup_updates, 1)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    return factor


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, schedule: str, total_updates: int,
                   warmup_updates: int = 0):
    """AdamW over the trainable parameters (LoRA: the adapters only) and its LambdaLR schedule."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(schedule, total_updates, warmup_updates))
