"""Pack (prompt, completion) pairs into padded tensors and score them with the policy.

Layout of one row: [pad … pad | prompt | completion | pad … pad]. Prompts are left-padded and
completions right-padded, so every completion starts in the same column and the LM head runs only
over the completion columns (`logits_to_keep`); rows are bucketed by length to waste little padding.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from r1lab.rl.logprobs import DEFAULT_CHUNK_BYTES, head_logprobs, output_head, token_logprobs_and_entropy


@dataclass
class SequenceBatch:
    input_ids: Tensor  # (B, Wp + Wc)
    attention_mask: Tensor  # (B, Wp + Wc)
    position_ids: Tensor  # (B, Wp + Wc)
    completion_ids: Tensor  # (B, Wc)
    completion_mask: Tensor  # (B, Wc) float, 1 on real completion tokens
    index: list[int]  # positions of these rows in the full step batch


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """(B, Wp) ids and mask with each prompt flush right."""
    wp = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), wp), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), wp), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, wp - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, wp - len(p):] = 1
    return ids, mask


def padded_rows(rows: Sequence[Sequence[float]], width: int) -> Tensor:
    """(B, width) float rows, right-padded with 0 (per-token values beside a right-padded completion)."""
    out = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, r in enumerate(rows):
        if r:
            out[i, : len(r)] = torch.tensor(list(r)[:width], dtype=torch.float32)
    return out


def right_pad(completions: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """(B, Wc) ids and float mask with each completion flush left."""
    wc = max(max(len(c) for c in completions), 1)
    ids = torch.full((len(completions), wc), pad_id, dtype=torch.long)
    mask = torch.zeros((len(completions), wc), dtype=torch.float32)
    for i, c in enumerate(completions):
        if c:
            ids[i, : len(c)] = torch.tensor(c, dtype=torch.long)
            mask[i, : len(c)] = 1.0
    return ids, mask


def pack(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int,
         index: list[int]) -> SequenceBatch:
    prompt_ids, prompt_mask = _left_pad(prompts, pad_id)
    completion_ids, completion_mask = right_pad(completions, pad_id)
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention = torch.cat([prompt_mask, completion_mask.long()], dim=1)
    position_ids = (attention.cumsum(1) - 1).clamp(min=0)
    return SequenceBatch(input_ids, attention, position_ids, completion_ids, completion_mask, index)


def chunked(items: Sequence, cost: Callable[[list], int], budget: int) -> list[list]:
    """`items` in order, cut into consecutive chunks whose cost stays within `budget`; an item that alone
    costs more gets a chunk of its own."""
    chunks: list[list] = []
    for item in items:
        if chunks and cost(chunks[-1] + [item]) <= budget:
            chunks[-1].append(item)
        else:
            chunks.append([item])
    return chunks


def micro_batches(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int,
                  size: int, tokens: int = 0) -> list[SequenceBatch]:
    """Length-bucketed micro-batches: rows of similar total length share a padded tensor. `size` rows each,
    or (tokens > 0) as many as fit `tokens` padded positions."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(completions[i]))
    if tokens:
        chunks = chunked(order, lambda rows: len(rows) * max(len(prompts[i]) + len(completions[i]) for i in rows),
                         tokens)
    else:
        chunks = [order[s : s + size] for s in range(0, len(order), size)]
    return [pack([prompts[i] for i in chunk], [completions[i] for i in chunk], pad_id, chunk) for chunk in chunks]


def completion_logits(model, batch: SequenceBatch) -> Tensor:
    """Logits that predict each completion token: (B, Wc, V)."""
    wc = batch.completion_ids.shape[1]
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                position_ids=batch.position_ids, logits_to_keep=wc + 1, use_cache=False)
    return out.logits[:, :-1]


def score_sequences(model, batch: SequenceBatch, temperature: float, with_entropy: bool = False,
                    entropy_grad: bool = False, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> tuple[Tensor, Tensor | None]:
    """Per-token log-probs (B, Wc) under softmax(logits / T), and optionally the entropy (detached unless
    `entropy_grad`). The LM head runs in chunks of at most `chunk_bytes` of fp32 logits (rl.logprobs)."""
    if output_head(model) is None:  # e.g. a LoRA-wrapped head: the plain path
        return token_logprobs_and_entropy(completion_logits(model, batch), batch.completion_ids, temperature,
                                          with_entropy, entropy_grad)
    targets = F.pad(batch.completion_ids, (0, 1))  # the head's last position predicts past the completion
    with head_logprobs(model, targets, temperature, with_entropy, entropy_grad, chunk_bytes) as out:
        completion_logits(model, batch)
    return _drop_last(out["logp"]), _drop_last(out["entropy"])


def _drop_last(t: Tensor | None) -> Tensor | None:
    return t[:, :-1] if t is not None else None


# ---------------------------------------------------------------- shared-prompt scoring
@dataclass
class GroupBatch:
    """Several groups: each distinct prompt once, its completions pointing at it by `row_prompt`."""

    prompt_ids: Tensor  # (P, Wp) left-padded
    prompt_mask: Tensor  # (P, Wp)
    row_prompt: Tensor  # (N,) which prompt each completion continues
    completion_ids: Tensor  # (N, Wc) right-padded
    completion_mask: Tensor  # (N, Wc) float
    index: list[int]  # positions of the N completions in the full step batch


def pack_groups(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], row_prompt: Sequence[int],
                pad_id: int, index: list[int]) -> GroupBatch:
    prompt_ids, prompt_mask = _left_pad(prompts, pad_id)
    completion_ids, completion_mask = right_pad(completions, pad_id)
    return GroupBatch(prompt_ids, prompt_mask, torch.tensor(list(row_prompt), dtype=torch.long),
                      completion_ids, completion_mask, index)


def grouped_micro_batches(pack_fn, prompt_of: Sequence[int], prompts: dict[int, Sequence[int]],
                          completions: Sequence[Sequence[int]], pad_id: int, size: int, tokens: int = 0) -> list:
    """Whole groups per micro-batch, each packed by `pack_fn(prompts, completions, row_prompt, pad_id, index)`;
    rows keep their batch positions. About `size` completions each, or (tokens > 0) about `tokens` tokens:
    each prompt once plus its completions, what the packed layout computes."""
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(prompt_of):
        groups.setdefault(key, []).append(i)
    weight = {k: len(prompts[k]) + sum(len(completions[i]) for i in rows) if tokens else len(rows)
              for k, rows in groups.items()}
    # similar prompt lengths pad less
    chunks = chunked(sorted(groups, key=lambda k: len(prompts[k])), lambda keys: sum(weight[k] for k in keys),
                     tokens or size)
    out = []
    for keys in chunks:
        rows = [i for k in keys for i in groups[k]]
        slot = {k: j for j, k in enumerate(keys)}
        out.append(pack_fn([prompts[k] for k in keys], [completions[i] for i in rows],
                           [slot[prompt_of[i]] for i in rows], pad_id, rows))
    return out


def group_micro_batches(prompt_of: Sequence[int], prompts: dict[int, Sequence[int]],
                        completions: Sequence[Sequence[int]], pad_id: int, size: int,
                        tokens: int = 0) -> list[GroupBatch]:
    """Whole groups per micro-batch, padded (GroupBatch)."""
    return grouped_micro_batches(pack_groups, prompt_of, prompts, completions, pad_id, size, tokens)


@functools.cache
def _cache_argument_of(model_class: type) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def _cache_argument(model) -> str:
    """transformers 5.2x renamed `past_key_values` to `cache`; speak whichever this model's forward knows."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel):  # DDP passes kwargs through to the module it wraps
        model = model.module
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft passes kwargs through
    return _cache_argument_of(type(base))


def _shared_prompt_pass(model, batch: GroupBatch) -> tuple[Tensor, dict]:
    """Run every distinct prompt once and fan its KV cache out to its completions: the logits predicting
    completion token 0 (N, V), and the keyword arguments of the completions' forward."""
    prompt_pos = (batch.prompt_mask.cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=batch.prompt_ids, attention_mask=batch.prompt_mask, position_ids=prompt_pos,
                use_cache=True, logits_to_keep=1)
    cache = getattr(out, "cache", None)  # transformers 5.2x; older versions call it past_key_values
    if cache is None:
        cache = out.past_key_values
    cache.batch_select_indices(batch.row_prompt)  # (P, ...) -> (N, ...)
    first = out.logits[:, -1][batch.row_prompt]  # (N, V)
    wc = batch.completion_ids.shape[1]
    prompt_len = batch.prompt_mask.sum(1)[batch.row_prompt]  # (N,)
    positions = prompt_len.unsqueeze(1) + torch.arange(wc, device=prompt_len.device).unsqueeze(0)  # (N, Wc)
    mask = torch.cat([batch.prompt_mask[batch.row_prompt], batch.completion_mask.long()], dim=1)
    return first, dict(input_ids=batch.completion_ids, attention_mask=mask, position_ids=positions,
                       use_cache=True, **{_cache_argument(model): cache})


def grouped_completion_logits(model, batch: GroupBatch) -> Tensor:
    """Logits predicting each completion token, running every shared prompt once: (N, Wc, V).

    The prompt's keys/values are computed once per group and fanned out to its G completions;
    autograd carries the completions' gradients back through them, so the result (and gradient)
    equals G separate full-sequence forwards, at 1/G of the prompt compute.
    """
    first, rest_inputs = _shared_prompt_pass(model, batch)
    rest = model(**rest_inputs).logits  # (N, Wc, V): predicts tokens 1..Wc
    return torch.cat([first.unsqueeze(1), rest[:, :-1]], dim=1)


def score_groups(model, batch: GroupBatch, temperature: float, with_entropy: bool = False,
                 entropy_grad: bool = False, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> tuple[Tensor, Tensor | None]:
    """As `score_sequences`, for a GroupBatch: the prompt pass's one position per prompt goes through the
    plain head, the completions' positions through the chunked one."""
    args = (temperature, with_entropy, entropy_grad)
    if output_head(model) is None:
        return token_logprobs_and_entropy(grouped_completion_logits(model, batch), batch.completion_ids, *args)
    first, rest_inputs = _shared_prompt_pass(model, batch)
    head_logp, head_entropy = token_logprobs_and_entropy(first.unsqueeze(1), batch.completion_ids[:, :1], *args)
    targets = F.pad(batch.completion_ids[:, 1:], (0, 1))  # the last position predicts past the completion
    with head_logprobs(model, targets, *args, chunk_bytes=chunk_bytes) as out:
        model(**rest_inputs)
    logp = torch.cat([head_logp, _drop_last(out["logp"])], dim=1)
    entropy = torch.cat([head_entropy, _drop_last(out["entropy"])], dim=1) if head_entropy is not None else None
    return logp, entropy


# ---------------------------------------------------------------- one step's samples, ready to score
def to_device(batch, device: torch.device):
    """A packed micro-batch with its tensors (nested dataclasses' too) on `device` (the batch itself on the CPU)."""
    if device.type == "cpu":
        return batch

    def moved(value):
        if isinstance(value, torch.Tensor):
            return value.to(device)
        if dataclasses.is_dataclass(value):
            return to_device(value, device)
        if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            return [to_device(v, device) for v in value]
        return value

    return dataclasses.replace(batch, **{f.name: moved(getattr(batch, f.name)) for f in dataclasses.fields(batch)
                                         if f.init})
