"""How a step's samples are laid out for the training forward, and the scorer that reads that layout:
packed (one unpadded row per micro-batch, rl.packed), shared-prompt (padded, each prompt's KV fanned out
to its group, rl.batch) or padded full sequences (rl.batch)."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from r1lab.rl.batch import (group_micro_batches, micro_batches, pack, pack_groups, score_groups, score_sequences,
                            to_device)
from r1lab.rl.packed import pack_groups_flat, packed_micro_batches, score_packed

LAYOUTS = ("packed", "shared_prompt", "padded")


def pack_for_scoring(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                     counted: Sequence[int], group_size: int, pad_id: int, size: int, layout: str,
                     device: torch.device, tokens: int = 0) -> tuple[list, Callable]:
    """The counted samples in micro-batches of about `size` completions (tokens > 0: about `tokens` tokens) on
    `device`, and the scorer for them. A micro-batch's `index` holds positions in `counted`."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    completions = [completion_ids[i] for i in counted]
    if layout == "padded":
        batches = micro_batches([prompt_ids[i] for i in counted], completions, pad_id, size, tokens)
        return [to_device(b, device) for b in batches], score_sequences
    prompt_of = [i // group_size for i in counted]
    prompts = {k: prompt_ids[k * group_size] for k in set(prompt_of)}
    make, score = (packed_micro_batches, score_packed) if layout == "packed" else (group_micro_batches, score_groups)
    return [to_device(b, device) for b in make(prompt_of, prompts, completions, pad_id, size, tokens)], score


def filler_batch(score: Callable, pad_id: int, device: torch.device):
    """One pad token of prompt and of completion, masked out: what a rank with fewer micro-batches runs."""
    if score is score_packed:
        b = pack_groups_flat([[pad_id]], [[pad_id]], [0], pad_id, [])
    elif score is score_groups:
        b = pack_groups([[pad_id]], [[pad_id]], [0], pad_id, [])
    else:
        b = pack([[pad_id]], [[pad_id]], pad_id, [])
    b.completion_mask.zero_()
    return to_device(b, device)
