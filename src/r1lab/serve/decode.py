"""The server's decode loop: all running requests share one batched forward per generated token.

Why not `Engine.generate`: it returns whole completions, and a server must stream each token as
it is made, stop a row when its client leaves, and let new requests join a batch that is already
running. So this loop drives the HF model directly with a KV cache (transformers `DynamicCache`):

- rows are left-padded, so every row's next token sits in the last column;
- a finished or cancelled row is dropped from the cache at the next step (it stops costing compute);
- rows that arrive mid-run are prefilled on their own, left-padded to the running batch's length
  and concatenated to it (continuous batching), when the cache is a plain per-layer key/value list.

Sampling reuses the rollout layer's per-row-generator sampler, so a seeded request draws the same
tokens whichever other requests share its batch.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from r1lab.rollout.base import SamplingParams
from r1lab.rollout.finish import eos_ids_of
from r1lab.rollout.sampling import next_tokens


@dataclass(eq=False)
class Row:
    """One sequence to decode. Callbacks run on the decode thread and must return quickly."""
    prompt_ids: list[int]
    params: SamplingParams  # max_new_tokens, temperature, top_p are used
    generator: torch.Generator
    on_token: Callable[[int], None]
    on_finish: Callable[[str], None]  # "eos" | "length" | "cancelled" | "error"
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: int = 0
    done: bool = False

    def cancel(self) -> None:
        self.cancelled.set()

    def finish(self, reason: str) -> None:
        if not self.done:
            self.done = True
            self.on_finish(reason)


Admit = Callable[[int], list[Row]]  # free row capacity -> rows that join the running batch now


class Decoder(Protocol):
    max_rows: int
    context_length: int

    def run(self, rows: list[Row], admit: Admit) -> None:
        """Decode until every row (including admitted ones) has finished; call each row's callbacks."""


@dataclass
class _Batch:
    rows: list[Row]
    cache: DynamicCache | None
    mask: torch.Tensor  # (B, T) 1 for real tokens, 0 for left padding
    next_input: torch.Tensor  # (B,) the last sampled token of each row, fed at the next step


class HFDecoder:
    """Batched token-by-token decoding on any HF causal LM (CPU or GPU)."""

    def __init__(self, model, tokenizer, max_rows: int = 64) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self.model, self.max_rows = model.eval(), max_rows
        self.eos_ids = eos_ids_of(tokenizer, model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048))
        self.device = next(model.parameters()).device

    @torch.inference_mode()
    def run(self, rows: list[Row], admit: Admit) -> None:
        batch = self._prefill(rows)
        while batch.rows:
            batch = self._step(batch)
            new = admit(self.max_rows - len(batch.rows)) if self._can_join(batch) else []
            if new:
                batch = self._join(batch, self._prefill(new))

    # ------------------------------------------------------------ steps
    def _prefill(self, rows: list[Row]) -> _Batch:
        rows = [r for r in rows if not self._dropped(r)]
        if not rows:
            return _Batch([], None, torch.zeros((0, 0), dtype=torch.long, device=self.device),
                          torch.zeros(0, dtype=torch.long, device=self.device))
        width = max(len(r.prompt_ids) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r.prompt_ids):] = torch.tensor(r.prompt_ids)
            mask[i, width - len(r.prompt_ids):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                         cache=cache, use_cache=True, logits_to_keep=1)  # the cache fills in place
        return self._sample_and_prune(_Batch(rows, cache, mask, ids[:, -1]), out.logits[:, -1])

    def _step(self, batch: _Batch) -> _Batch:
        mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch.rows), 1))], dim=1)  # (B, T+1)
        out = self.model(input_ids=batch.next_input[:, None], attention_mask=mask,
                         position_ids=mask.sum(-1, keepdim=True) - 1, cache=batch.cache, use_cache=True)
        batch.mask = mask
        return self._sample_and_prune(batch, out.logits[:, -1])

    def _sample_and_prune(self, batch: _Batch, logits: torch.Tensor) -> _Batch:
        """logits: (B, V) for each row's next token. Emits the tokens, then drops rows that finished."""
        tokens = torch.empty(len(batch.rows), dtype=torch.long, device=logits.device)
        groups: dict[tuple[float, float], list[int]] = {}
        for i, r in enumerate(batch.rows):
            groups.setdefault((r.params.temperature, r.params.top_p), []).append(i)
        for (temperature, top_p), idx in groups.items():
            params = SamplingParams(max_new_tokens=1, temperature=temperature, top_p=top_p, logprobs=False)
            picked, _ = next_tokens(logits[idx], params, [batch.rows[i].generator for i in idx])
            tokens[idx] = picked.to(tokens.device)
        keep = []
        for i, (r, token) in enumerate(zip(batch.rows, tokens.tolist())):
            if r.cancelled.is_set():
                r.finish("cancelled")
                continue
            if token in self.eos_ids:
                r.finish("eos")
                continue
            r.generated += 1
            r.on_token(token)
            if r.generated >= r.params.max_new_tokens:
                r.finish("length")
            elif not self._dropped(r):
                keep.append(i)
        batch.next_input = tokens
        return self._select(batch, keep)

    def _dropped(self, r: Row) -> bool:
        if r.cancelled.is_set():
            r.finish("cancelled")
        return r.done

    # ------------------------------------------------------------ cache surgery
    def _select(self, batch: _Batch, keep: list[int]) -> _Batch:
        if len(keep) == len(batch.rows):
            return batch
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        batch.rows = [batch.rows[i] for i in keep]
        batch.mask, batch.next_input = batch.mask[index], batch.next_input[index]
        if keep:
            batch.cache.batch_select_indices(index)
            self._trim_padding(batch)
        return batch

    def _trim_padding(self, batch: _Batch) -> None:
        """Drop leading columns that are padding in every remaining row (left by longer, finished rows)."""
        start = int((batch.mask.sum(0) > 0).nonzero()[0]) if batch.mask.numel() else 0
        if start == 0 or not self._plain(batch.cache):
            return
        batch.mask = batch.mask[:, start:]
        for layer in batch.cache.layers:
            layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]

    @staticmethod
    def _plain(cache) -> bool:
        """Cache surgery below assumes full-attention layers holding (B, H, T, D) keys and values."""
        return cache is not None and all(type(layer) is DynamicLayer for layer in cache.layers)

    def _can_join(self, batch: _Batch) -> bool:
        return not batch.rows or self._plain(batch.cache)

    def _join(self, running: _Batch, new: _Batch) -> _Batch:
        if not running.rows:
            return new
        if not new.rows:
            return running
        width = max(running.mask.shape[1], new.mask.shape[1])

        def left_pad(t: torch.Tensor, dim: int) -> torch.Tensor:
            missing = width - t.shape[dim]
            if missing == 0:
                return t
            shape = list(t.shape)
            shape[dim] = missing
            return torch.cat([t.new_zeros(shape), t], dim=dim)

        for old_layer, new_layer in zip(running.cache.layers, new.cache.layers):
            old_layer.keys = torch.cat([left_pad(old_layer.keys, 2), left_pad(new_layer.keys, 2)])
            old_layer.values = torch.cat([left_pad(old_layer.values, 2), left_pad(new_layer.values, 2)])
        running.rows = running.rows + new.rows
        running.mask = torch.cat([left_pad(running.mask, 1), left_pad(new.mask, 1)])
        running.next_input = torch.cat([running.next_input, new.next_input])
        return running
