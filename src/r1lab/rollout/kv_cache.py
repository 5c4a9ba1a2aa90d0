"""A preallocated, slot-based KV cache: one slot per running sequence, written in place.

Running sequences always occupy the first `n` slots, so the decode step works on the contiguous
prefix `k[:n]` without gathering. When sequences finish, the survivors from the tail move into
the holes (one indexed copy per layer), which is how finished rows leave the batch.
"""
from __future__ import annotations

import torch


class KVCache:
    def __init__(self, num_layers: int, num_slots: int, num_kv_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str = "cpu"):
        shape = (num_slots, num_kv_heads, max_len, head_dim)  # (S, Hkv, Tmax, D)
        # Zeros, not empty: masked positions still meet the values (0 * NaN garbage = NaN), so
        # every slot position a shorter row can see must hold a finite number.
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.num_slots, self.max_len = num_slots, max_len

    def write_prefill(self, layer: int, slots: torch.Tensor, rows: torch.Tensor,
                      k: torch.Tensor, v: torch.Tensor, start: int = 0) -> None:
        """Copy prefill keys/values of `rows` (indices into k/v's batch) into cache `slots` at
        positions [start, start + Tp).

        k, v: (U, Hkv, Tp, D). Positions past a row's prompt hold padding garbage; they are masked
        until the decode step overwrites them with real tokens.
        """
        end = start + k.shape[2]
        self.k[layer][slots, :, start:end] = k[rows].to(self.k[layer].dtype)
        self.v[layer][slots, :, start:end] = v[rows].to(self.v[layer].dtype)

    def write_decode(self, layer: int, rows: torch.Tensor, positions: torch.Tensor, k: torch.Tensor,
                     v: torch.Tensor) -> None:
        """Store one decode step's k, v (B, Hkv, D) of slots `rows` at their `positions`."""
        self.k[layer][rows, :, positions] = k.to(self.k[layer].dtype)
        self.v[layer][rows, :, positions] = v.to(self.v[layer].dtype)

    def grown(self, num_slots: int, max_len: int) -> KVCache:
        """A cache of num_slots x max_len (each at least this one's) holding this one's contents."""
        _, num_kv_heads, _, head_dim = self.k[0].shape
        bigger = KVCache(len(self.k), max(num_slots, self.num_slots), num_kv_heads, max(max_len, self.max_len),
                         head_dim, self.k[0].dtype, self.k[0].device)
        for old, new in zip(self.k + self.v, bigger.k + bigger.v):
            new[:self.num_slots, :, :self.max_len] = old
        return bigger

    def move_slots(self, src: torch.Tensor, dst: torch.Tensor, width: int, start: int = 0) -> None:
        """Copy positions [start, width) of slots `src` into slots `dst` (compaction; a prefill's fan-out)."""
        for layer_k, layer_v in zip(self.k, self.v):
            layer_k[dst, :, start:width] = layer_k[src, :, start:width]
            layer_v[dst, :, start:width] = layer_v[src, :, start:width]
