"""Held-out accuracy during training: one sample per question (greedy by default), rule-scored."""
from __future__ import annotations

import numpy as np

from r1lab.data import Row
from r1lab.data.prompts import PromptConfig, full_completion, render
from r1lab.rewards import score_batch
from r1lab.rollout import Engine, SamplingParams


def evaluate_heldout(engine: Engine, tokenizer, rows: list[Row], prompt: PromptConfig, params: SamplingParams,
                     seed: int = 0, batch_size: int = 64) -> dict[str, float]:
    if not rows:
        return {}
    prompts = [tokenizer(render(r["question"], prompt, tokenizer), add_special_tokens=False)["input_ids"] for r in rows]
    completions = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        completions += engine.generate(chunk, params, [seed * 1_000_003 + start + i for i in range(len(chunk))])
    texts = [full_completion(c.text, prompt) for c in completions]
    scores = score_batch(texts, rows, {"accuracy": 1.0, "accuracy_lenient": 1.0, "format": 1.0}).per_reward
    return {
        "eval/accuracy": float(np.mean(scores["accuracy"])),
        "eval/accuracy_lenient": float(np.mean(scores["accuracy_lenient"])),
        "eval/format": float(np.mean(scores["format"])),
        "eval/length_mean": float(np.mean([len(c.token_ids) for c in completions])),
        "eval/n": float(len(rows)),
    }
