"""Which rows a training step sees: a pure function of (seed, position), shared by the GRPO and SFT trainers."""
from __future__ import annotations

import random


def epoch_order(num_rows: int, seed: int, start: int, count: int) -> list[int]:
    """Rows at global positions [start, start + count): a fresh seeded permutation each epoch.

    Depends on nothing but its arguments, so a resumed run (or one on more ranks) sees the same rows
    as an uninterrupted single-process run.
    """
    out, orders = [], {}
    for pos in range(start, start + count):
        epoch, offset = divmod(pos, num_rows)
        if epoch not in orders:
            orders[epoch] = list(range(num_rows))
            random.Random(f"{seed}/epoch{epoch}").shuffle(orders[epoch])
        out.append(orders[epoch][offset])
    return out
