"""Samples -> padded tensors for one forward pass; pure functions, no model.

Packed rows hold several whole samples back to back. Position ids restart at 0 at every sample and no
attention mask is passed: transformers (masking_utils.find_packed_sequence_indices; checked on 5.24) then
builds a block-diagonal causal mask from the restarts for sdpa/eager (flash-attention reads the same
position ids), so a token never attends to another sample. That only happens with use_cache=False:
with a cache object the detection is skipped. tests/test_sft.py checks logits packed == alone.

Layout of a packed row (T = longest row in the micro-batch):
    ids     [a0 a1 a2 a3 | b0 b1 b2 | pad pad]
    pos     [ 0  1  2  3 |  0  1  2 |   0   1]   the padding is a segment of its own
    labels  [-100 -100 a2 a3 | -100 b1 b2 | -100 -100]   (unshifted: labels[t] is the token at t)
Unpacked rows (packing=False) hold one sample each, right-padded, with a 0/1 attention mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

IGNORE = -100  # label of a token that is not a target (prompt, template, padding)


@dataclass(frozen=True)
class Sample:
    input_ids: list[int]
    labels: list[int]  # the token id where it is a target, IGNORE elsewhere; same length as input_ids
    truncated: bool = False  # cut at max_seq_len

    def __post_init__(self):
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"sample has {len(self.input_ids)} input ids but {len(self.labels)} labels")

    @property
    def num_targets(self) -> int:
        # the first token is never predicted: nothing in its own sample comes before it
        return sum(1 for label in self.labels[1:] if label != IGNORE)


@dataclass
class PackedBatch:
    input_ids: Tensor  # (R, T)
    labels: Tensor  # (R, T) IGNORE on non-targets, padding and each sample's first token
    position_ids: Tensor  # (R, T) restarting at 0 at each sample
    attention_mask: Tensor | None  # (R, T) 1 on real tokens; None for packed rows (see module doc)
    boundaries: list[list[tuple[int, int]]]  # per row: [start, end) of each sample in it
    samples: list[list[int]]  # per row: indices (into the list given to pack) of its samples

    @property
    def num_targets(self) -> int:
        return int((self.labels != IGNORE).sum())

    @property
    def num_tokens(self) -> int:
        return sum(end - start for row in self.boundaries for start, end in row)


def plan_rows(lengths: Sequence[int], max_len: int, packing: bool = True) -> list[list[int]]:
    """Which samples share a row: first-fit decreasing into rows of <= max_len tokens (one per row if not packing).

    Rows list samples in a deterministic order (longest first, ties by index), so a plan depends only on
    the lengths.
    """
    too_long = [i for i, n in enumerate(lengths) if n > max_len]
    if too_long:
        raise ValueError(f"samples {too_long[:5]} are longer than max_len={max_len}; truncate them first")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    if not packing:
        return [[i] for i in order]
    rows: list[list[int]] = []
    free: list[int] = []  # tokens left in each row
    for i in order:
        for r, room in enumerate(free):
            if lengths[i] <= room:
                rows[r].append(i)
                free[r] -= lengths[i]
                break
        else:
            rows.append([i])
            free.append(max_len - lengths[i])
    return rows


def collate(samples: Sequence[Sample], rows: Sequence[Sequence[int]], pad_id: int, packed: bool = True) -> PackedBatch:
    """Tensors for the given rows (each a list of sample indices), right-padded to the longest row."""
    width = max(sum(len(samples[i].input_ids) for i in row) for row in rows)
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    labels = torch.full(shape, IGNORE, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    attention = torch.zeros(shape, dtype=torch.long)
    boundaries = []
    for r, row in enumerate(rows):
        spans, start = [], 0
        for i in row:
            s = samples[i]
            end = start + len(s.input_ids)
            input_ids[r, start:end] = torch.tensor(s.input_ids, dtype=torch.long)
            labels[r, start:end] = torch.tensor(s.labels, dtype=torch.long)
            # without this the previous sample's last token would be trained to predict this one's first
            labels[r, start] = IGNORE
            position_ids[r, start:end] = torch.arange(end - start)
            spans.append((start, end))
            start = end
        attention[r, :start] = 1
        # padding: its own segment in a packed row (so the restart marks where the last sample ends), or
        # continuing positions in an unpacked row (hidden by the attention mask anyway)
        position_ids[r, start:] = torch.arange(width - start) if packed else torch.arange(start, width)
        boundaries.append(spans)
    return PackedBatch(input_ids, labels, position_ids, None if packed else attention, boundaries,
                       [list(row) for row in rows])


def pack(samples: Sequence[Sample], max_len: int, pad_id: int, packing: bool = True) -> PackedBatch:
    """All the samples in one batch of rows of <= max_len tokens."""
    return collate(samples, plan_rows([len(s.input_ids) for s in samples], max_len, packing), pad_id, packing)


def micro_batches(samples: Sequence[Sample], max_len: int, micro_batch_tokens: int, pad_id: int,
                  packing: bool = True) -> list[PackedBatch]:
    """Rows grouped so that rows x padded width <= micro_batch_tokens; rows of similar length share a batch."""
    if not samples:
        return []
    lengths = [len(s.input_ids) for s in samples]
    rows = plan_rows(lengths, max_len, packing)
    widths = [sum(lengths[i] for i in row) for row in rows]
    order = sorted(range(len(rows)), key=lambda r: -widths[r])  # stable: ties keep the plan's order
    groups: list[list[int]] = []  # row numbers; widest first, so a group's first row sets its width
    for r in order:
        if groups and (len(groups[-1]) + 1) * widths[groups[-1][0]] <= micro_batch_tokens:
            groups[-1].append(r)
        elif widths[r] > micro_batch_tokens:
            raise ValueError(f"a row of {widths[r]} tokens does not fit micro_batch_tokens={micro_batch_tokens}")
        else:
            groups.append([r])
    return [collate(samples, [rows[r] for r in group], pad_id, packing) for group in groups]
