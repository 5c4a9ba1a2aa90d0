"""Held-out accuracy during training: one sample per question (greedy by default), rule-scored."""
from __future__ import annotations

import numpy as np

from r1lab.data import Row
from r1lab.data.prompts import PromptConfig, full_completion, render
from r1lab.rewards import score_batch
from r1lab.rollout import Engine, SamplingParams


EVAL_REWARDS = {"accuracy": 1.0, "accuracy_lenient": 1.0, "format": 1.0, "language_consistency": 1.0}


def heldout_records(engine: Engine, tokenizer, rows: list[Row], prompt: PromptConfig, params: SamplingParams,
                    seed: int = 0, batch_size: int = 64, indices: list[int] | None = None) -> list[dict]:
    """Sample and score rows[i] for i in `indices` (default: all): one record per row with its index.

    Row i is sampled with seed `seed * 1_000_003 + i` whatever shares its batch, so ranks can split the
    indices and merge their records into the one-process result.
    """
    indices = list(range(len(rows))) if indices is None else list(indices)
    params = params.ending_at(prompt.stops)
    if not indices:
        return []
    prompts = [tokenizer(render(rows[i]["question"], prompt, tokenizer), add_special_tokens=False)["input_ids"]
               for i in indices]
    completions = []
    for start in range(0, len(indices), batch_size):
        completions += engine.generate(prompts[start : start + batch_size], params,
                                       [seed * 1_000_003 + i for i in indices[start : start + batch_size]])
    texts = [full_completion(c.text, prompt) for c in completions]
    # A verifier that times out on one held-out reply scores it 0 (counted), as eval does, rather than ending the run.
    scores = score_batch(texts, [rows[i] for i in indices], EVAL_REWARDS, on_error="zero",
                         completion_ids=[c.token_ids for c in completions]).per_reward
    return [{"index": i, **{name: scores[name][j] for name in EVAL_REWARDS}, "length": len(completions[j].token_ids)}
            for j, i in enumerate(indices)]


def summarize_heldout(records: list[dict]) -> dict[str, float]:
    if not records:
        return {}

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in records]))

    def right(key: str) -> float:  # as `r1lab eval` counts: full credit only (reasoning-gym pays part for "-12" vs 12)
        return float(np.mean([r[key] >= 1.0 for r in records]))

    return {
        "eval/accuracy": right("accuracy"),
        "eval/accuracy_score": mean("accuracy"),  # the verifier's mean score, partial credit included
        "eval/accuracy_lenient": right("accuracy_lenient"),
        "eval/format": mean("format"),
        "eval/language": mean("language_consistency"),
        "eval/length_mean": mean("length"),
        "eval/n": float(len(records)),
    }


def evaluate_heldout(engine: Engine, tokenizer, rows: list[Row], prompt: PromptConfig, params: SamplingParams,
                     seed: int = 0, batch_size: int = 64) -> dict[str, float]:
    return summarize_heldout(heldout_records(engine, tokenizer, rows, prompt, params, seed, batch_size))
