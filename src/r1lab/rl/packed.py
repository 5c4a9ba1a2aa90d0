"""Padding-free scoring: a micro-batch's groups laid end to end as one sequence, no pad token anywhere.

Layout of the one row: [prompt_1 | c_1,1 | c_1,2 | … | c_1,G | prompt_2 | c_2,1 | …]. Every linear layer,
norm and MLP runs on real tokens only; each prompt runs once for its whole group (as the shared-prompt
path's KV fan-out, without the cache object). Only attention needs to know where segments start: a
registered attention function gathers each segment's queries and keys from the row (a completion sees its
prompt and its own earlier tokens), attends them, and puts the outputs back. Prompts and completions
are attended in separate blocks, so short completions are not padded to a long prompt's width. The LM head
runs only on the positions whose next token is scored (`logits_to_keep` as an index tensor).

Scores come back right-padded, (N, Wc) as the padded paths return them, so the loss code is shared.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from r1lab.rl.batch import grouped_micro_batches, right_pad
from r1lab.rl.logprobs import DEFAULT_CHUNK_BYTES, head_logprobs, output_head, token_logprobs_and_entropy, unwrapped
from r1lab.rollout.forward import visible

ATTENTION_NAME = "r1lab_packed"
# Completions per attention block, sorted by length. Measured (benchmarks/train_pass.py, config a, bf16):
# attention is then a third of the pass, and its padded query width is what a block pays for.
COMPLETIONS_PER_BLOCK = 8
_LAYOUT: contextvars.ContextVar["AttentionLayout | None"] = contextvars.ContextVar("r1lab_packed_layout", default=None)


@dataclass
class AttentionBlock:
    """Rows of segments attended together: query and key positions in the packed row, padded per block."""

    query_index: Tensor  # (R, Q) positions in the packed row (padding slots point at 0)
    query_valid: Tensor  # (R, Q) bool
    key_index: Tensor  # (R, K)
    key_valid: Tensor  # (R, K) bool
    query_pos: Tensor  # (R, Q) RoPE positions, for the causal and sliding-window masks
    key_pos: Tensor  # (R, K)
    masks: dict = field(default_factory=dict)  # (window, groups) -> (R, 1, groups * Q, K) bool, built on first use

    def mask(self, window: int | None, groups: int = 1) -> Tensor:
        """groups > 1: the mask repeated along the query axis, for `groups` query heads stacked there."""
        if (window, groups) not in self.masks:
            seen = visible(self.query_pos.unsqueeze(-1), self.key_pos.unsqueeze(-2), window)
            seen &= self.key_valid.unsqueeze(1) & self.query_valid.unsqueeze(-1)
            # A padding query sees key slot 0 (always a real key): its output is finite and unused, so its
            # gradient is exactly zero instead of NaN from an all-masked softmax.
            seen[..., 0] |= ~self.query_valid
            self.masks[(window, groups)] = seen.unsqueeze(1).repeat(1, 1, groups, 1)
        return self.masks[(window, groups)]


@dataclass
class AttentionLayout:
    blocks: list[AttentionBlock]
    inverse: Tensor  # (S,) for each packed position, its slot in the blocks' concatenated (rows * Q) outputs


@dataclass
class PackedBatch:
    input_ids: Tensor  # (1, S)
    position_ids: Tensor  # (1, S)
    keep: Tensor  # (T,) packed positions whose next token is scored, T = sum of completion lengths
    targets: Tensor  # (1, T) the tokens they predict
    slots: Tensor  # (T,) where each scored token sits in the flattened (N, Wc) completion grid
    layout: AttentionLayout
    completion_ids: Tensor  # (N, Wc) right-padded, as the padded paths
    completion_mask: Tensor  # (N, Wc) float
    index: list[int]  # positions of the N completions in the step's counted samples


def _block(segments: list[tuple[list[int], list[int]]], positions: Tensor) -> AttentionBlock:
    """segments: (query positions, key positions) in the packed row, one pair per attention row."""
    q_width = max(len(q) for q, _ in segments)
    k_width = max(len(k) for _, k in segments)
    qi = torch.zeros((len(segments), q_width), dtype=torch.long)
    ki = torch.zeros((len(segments), k_width), dtype=torch.long)
    qv = torch.zeros((len(segments), q_width), dtype=torch.bool)
    kv = torch.zeros((len(segments), k_width), dtype=torch.bool)
    for r, (q, k) in enumerate(segments):
        qi[r, : len(q)], qv[r, : len(q)] = torch.tensor(q), True
        ki[r, : len(k)], kv[r, : len(k)] = torch.tensor(k), True
    return AttentionBlock(qi, qv, ki, kv, positions[qi], positions[ki])


def pack_groups_flat(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
                     row_prompt: Sequence[int], pad_id: int, index: list[int]) -> PackedBatch:
    """Prompts (each once) and the non-empty completions continuing them, `row_prompt[n]` naming completion
    n's prompt, as one packed row."""
    if not all(completions):
        raise ValueError("pack_groups_flat: every completion needs at least one token (empty ones are not scored)")
    ids: list[int] = []
    positions: list[int] = []
    prompt_span: list[list[int]] = []
    completion_span: list[list[int]] = [[] for _ in completions]
    keep: list[int] = []
    rows_of: dict[int, list[int]] = {}
    for n, p in enumerate(row_prompt):
        rows_of.setdefault(p, []).append(n)
    for p, prompt in enumerate(prompts):
        start = len(ids)
        prompt_span.append(list(range(start, start + len(prompt))))
        ids += prompt
        positions += range(len(prompt))
        for n in rows_of.get(p, []):
            c = completions[n]
            begin = len(ids)
            completion_span[n] = list(range(begin, begin + len(c)))
            ids += c
            positions += range(len(prompt), len(prompt) + len(c))
    completion_ids, completion_mask = right_pad(completions, pad_id)
    width = completion_ids.shape[1]
    slots = []
    for n, c in enumerate(completions):  # token 0 is predicted by the prompt's last position, then its own
        keep += [prompt_span[row_prompt[n]][-1]] + completion_span[n][:-1]
        slots += range(n * width, n * width + len(c))
    pos = torch.tensor(positions, dtype=torch.long)
    blocks = [_block([(span, span) for span in prompt_span], pos)]
    # Completions attend in blocks of similar length, so a short one is not padded to the longest's width.
    by_length = sorted(range(len(completions)), key=lambda n: len(completions[n]))
    for start in range(0, len(by_length), COMPLETIONS_PER_BLOCK):
        rows = by_length[start:start + COMPLETIONS_PER_BLOCK]
        blocks.append(_block([(completion_span[n], prompt_span[row_prompt[n]] + completion_span[n]) for n in rows],
                             pos))
    inverse = torch.empty(len(ids), dtype=torch.long)
    offset = 0
    for block in blocks:
        width_q = block.query_index.shape[1]
        flat = torch.arange(block.query_index.numel()) + offset
        inverse[block.query_index[block.query_valid]] = flat.view(-1, width_q)[block.query_valid]
        offset += block.query_index.numel()
    targets = [t for c in completions for t in c]
    return PackedBatch(torch.tensor([ids]), pos.unsqueeze(0), torch.tensor(keep), torch.tensor([targets]),
                       torch.tensor(slots), AttentionLayout(blocks, inverse),
                       completion_ids, completion_mask, index)


def packed_micro_batches(prompt_of: Sequence[int], prompts: dict[int, Sequence[int]],
                         completions: Sequence[Sequence[int]], pad_id: int, size: int,
                         tokens: int = 0) -> list[PackedBatch]:
    """Whole groups per micro-batch (about `size` completions or `tokens` tokens each), packed; rows keep
    their batch positions."""
    return grouped_micro_batches(pack_groups_flat, prompt_of, prompts, completions, pad_id, size, tokens)


# ---------------------------------------------------------------- the attention function
def _attend(block: AttentionBlock, query: Tensor, key: Tensor, value: Tensor, scaling: float | None,
            window: int | None, softcap: float | None, dropout: float) -> Tensor:
    """(S, H, D) packed q and (S, Hkv, D) k, v -> (R, H, Q, D) for this block's rows.

    Grouped-query attention without repeating K/V: the G = H / Hkv query heads of each KV head are
    stacked along the query axis, (R, Hkv, G * Q, D), HF's head h -> KV head h // G mapping.
    """
    H, Hkv, D = query.shape[1], key.shape[1], query.shape[-1]
    R, Q = block.query_index.shape
    K = block.key_index.shape[1]
    G = H // Hkv
    # index_select on the position axis (rows of H x D, no copy first), not fancy indexing: its backward is an
    # index_add, where indexing's is a far slower index_put
    q = query.index_select(0, block.query_index.view(-1)).view(R, Q, Hkv, G, D).permute(0, 2, 3, 1, 4)
    q = q.reshape(R, Hkv, G * Q, D)
    k = key.index_select(0, block.key_index.view(-1)).view(R, K, Hkv, D).transpose(1, 2)  # (R, Hkv, K, D)
    v = value.index_select(0, block.key_index.view(-1)).view(R, K, Hkv, D).transpose(1, 2)
    mask = block.mask(window, G)
    # Explicit matmuls, not SDPA: at these block sizes SDPA's CPU flash kernel took ~1.4x as long forward and
    # backward (benchmarks/train_pass.py). Scores and softmax in fp32 (q and k as RoPE left them, not rounded).
    acc = torch.promote_types(q.dtype, torch.float32)
    with torch.autocast(q.device.type, enabled=False):
        scale = scaling if scaling is not None else D ** -0.5
        scores = (q.to(acc) * scale) @ k.to(acc).transpose(-1, -2)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap  # Gemma 2's attention logit soft-capping
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1).to(v.dtype)
    out = F.dropout(weights, dropout, training=dropout > 0) @ v
    return out.view(R, H, Q, D)


def packed_attention_forward(module, query: Tensor, key: Tensor, value: Tensor, attention_mask, dropout: float = 0.0,
                             scaling: float | None = None, sliding_window: int | None = None, softcap=None, **_):
    """transformers' attention-function signature: (1, H, S, D) q, (1, Hkv, S, D) k, v -> (1, S, H, D)."""
    layout = _LAYOUT.get()
    if layout is None:
        raise RuntimeError(f"attention {ATTENTION_NAME!r} runs only inside r1lab.rl.packed.packed_attention")
    # (S, H, D) views: HF's q, k, v are (1, S, H, D) tensors transposed, so these are contiguous
    q, k, v = query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1)
    parts = [_attend(b, q, k, v, scaling, sliding_window, softcap, dropout) for b in layout.blocks]
    flat = torch.cat([p.transpose(1, 2).reshape(-1, p.shape[1], p.shape[-1]) for p in parts])  # (rows*Q, H, D)
    return flat.index_select(0, layout.inverse).unsqueeze(0), None


@contextlib.contextmanager
def packed_attention(model: torch.nn.Module, layout: AttentionLayout):
    """Inside, `model`'s attention layers read segments from `layout` (the model's own kind is restored after)."""
    from transformers import AttentionInterface

    base = unwrapped(model)
    if any(getattr(m, "gradient_checkpointing", False) for m in base.modules()):
        # The backward's recompute would run after this context has restored the model's own attention.
        raise ValueError("grpo.layout=packed cannot run under gradient checkpointing; "
                         "turn it off or use grpo.layout=shared_prompt")
    AttentionInterface.register(ATTENTION_NAME, packed_attention_forward)
    config = base.config
    previous = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    token = _LAYOUT.set(layout)
    try:
        yield
    finally:
        _LAYOUT.reset(token)
        config._attn_implementation = previous


def score_packed(model, batch: PackedBatch, temperature: float, with_entropy: bool = False,
                 entropy_grad: bool = False, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> tuple[Tensor, Tensor | None]:
    """As `rl.batch.score_groups`, for a PackedBatch: (N, Wc) log-probs and optionally entropy, 0 on padding."""
    args = (temperature, with_entropy, entropy_grad)
    inputs = dict(input_ids=batch.input_ids, position_ids=batch.position_ids, logits_to_keep=batch.keep,
                  use_cache=False)
    with packed_attention(model, batch.layout):
        if output_head(model) is None:  # e.g. a LoRA-wrapped head: the plain path
            logp, entropy = token_logprobs_and_entropy(model(**inputs).logits, batch.targets, *args)
        else:
            with head_logprobs(model, batch.targets, *args, chunk_bytes=chunk_bytes) as out:
                model(**inputs)
            logp, entropy = out["logp"], out["entropy"]
    return _unpack(logp, batch), _unpack(entropy, batch) if entropy is not None else None


def _unpack(values: Tensor, batch: PackedBatch) -> Tensor:
    grid = values.new_zeros(batch.completion_ids.numel())
    return grid.index_copy(0, batch.slots, values.reshape(-1)).view(batch.completion_ids.shape)
