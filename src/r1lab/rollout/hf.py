"""The reference backend: transformers `generate`. Simple and correct; the native engine is faster."""
from __future__ import annotations

from typing import Sequence

import torch

from r1lab.rollout.base import Completion, SamplingParams
from r1lab.rollout.finish import eos_ids_of, finish_completion


class HFEngine:
    """Per-row seeds are not supported by `generate`: the batch is seeded by the first row's seed."""

    def __init__(self, model, tokenizer, max_batch_size: int = 64):
        self.model, self.tokenizer, self.max_batch_size = model, tokenizer, max_batch_size
        self.eos_ids = eos_ids_of(tokenizer, model)

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams,
                 seeds: Sequence[int] | None = None) -> list[Completion]:
        out: list[Completion] = []
        for start in range(0, len(prompts), self.max_batch_size):
            chunk = prompts[start : start + self.max_batch_size]
            chunk_seeds = seeds[start : start + self.max_batch_size] if seeds is not None else None
            out += self._generate_batch(chunk, params, chunk_seeds)
        return out

    def _generate_batch(self, prompts, params: SamplingParams, seeds) -> list[Completion]:
        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        device = next(self.model.parameters()).device
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding: every row's next token lands in the last column
            input_ids[i, width - len(p):] = torch.tensor(p)
            attention[i, width - len(p):] = 1
        if seeds is not None:
            torch.manual_seed(int(seeds[0]))
        sample = params.temperature > 0
        kwargs = dict(do_sample=sample, max_new_tokens=params.max_new_tokens, pad_token_id=pad,
                      eos_token_id=sorted(self.eos_ids), return_dict_in_generate=True, output_logits=params.logprobs)
        if sample:
            # top_k=0 disables top-k here as in SamplingParams; None would mean HF's default of 50
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        was_training = self.model.training
        self.model.eval()
        try:
            result = self.model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
        finally:
            self.model.train(was_training)
        new = result.sequences[:, width:].cpu()
        logprobs = None
        if params.logprobs:
            logits = torch.stack(result.logits, dim=1).float().cpu()  # (B, T, V)
            scale = params.temperature if sample else 1.0
            logprobs = torch.log_softmax(logits / scale, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        return [
            finish_completion(p, new[i].tolist(), logprobs[i].tolist() if logprobs is not None else None,
                              self.tokenizer, self.eos_ids, params)
            for i, p in enumerate(prompts)
        ]
