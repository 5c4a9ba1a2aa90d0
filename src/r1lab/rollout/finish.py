"""Turn raw generated ids into a Completion: cut at EOS or a stop string, decode, set finish_reason.

Shared by every backend so they agree on exactly where a completion ends.
"""
from __future__ import annotations

from typing import Sequence

from r1lab.rollout.base import Completion, SamplingParams


def eos_ids_of(tokenizer, model=None) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if config_eos is not None:
        ids |= set(config_eos) if isinstance(config_eos, (list, tuple)) else {config_eos}
    return ids


def finish_completion(
    prompt_ids: Sequence[int],
    new_ids: Sequence[int],
    logprobs: Sequence[float] | None,
    tokenizer,
    eos_ids: set[int],
    params: SamplingParams,
) -> Completion:
    stop, include_stop = params.stop, params.include_stop
    tokens = list(new_ids)
    reason = "length"
    for i, tok in enumerate(tokens):
        if tok in eos_ids:
            tokens, reason = tokens[: i + 1], "stop"
            break
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    if stop:
        hits = [(text.find(s), s) for s in stop if s and s in text]
        if hits:
            pos, hit = min(hits)
            end = pos + len(hit) if include_stop else pos
            text, reason = text[:end], "stop"
            # keep the shortest token prefix whose text reaches (include_stop: covers) the stop string
            reach = end if include_stop else pos + 1
            for n in range(1, len(tokens) + 1):
                if len(tokenizer.decode(tokens[:n], skip_special_tokens=True)) >= reach:
                    tokens = tokens[:n]
                    break
    if reason == "length" and len(tokens) < params.max_new_tokens:
        reason = "stop"  # the backend ended early on a stop condition of its own
    lps = list(logprobs[: len(tokens)]) if logprobs is not None else None
    return Completion(list(prompt_ids), tokens, text, reason, lps)


def stops_in(text_tail: str, stop: Sequence[str]) -> bool:
    return any(s and s in text_tail for s in stop)
