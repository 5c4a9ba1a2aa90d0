"""Process-group facts without global state: every trainer asks these instead of assuming one process."""
from __future__ import annotations

import torch
import torch.distributed as torch_dist


def is_distributed() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def rank() -> int:
    return torch_dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return torch_dist.get_world_size() if is_distributed() else 1


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum a few scalars across ranks (metrics, loss normalisers); identity on one process."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    torch_dist.all_reduce(t)
    return t.tolist()
