"""Rejection sampling (R1 §2.3.3): keep the teacher samples worth fine-tuning on.

Each sample is checked in this fixed order and counted under the first check it fails:
  truncated       the teacher hit its token limit (finish_reason "length"): the reply never ended
  unclosed_think  no `<think>` … `</think>` block
  too_long        more than `max_tokens` tokens (num_tokens, else an estimate of UTF-8 bytes / 4)
  mixed_language  under `min_language_share` of the think section's words are in `language`
  repetition      over `max_repeated_ngram_share` of the completion's word n-grams are repeats
  incorrect       the row's verifier rejects the extracted answer
  duplicate       the same completion (whitespace-normalised) was already kept for this prompt
  over_cap        this prompt already has `max_per_prompt` kept samples
The cheap text checks come before the verifier; duplicate and over_cap come last because they
depend on which samples were kept.

    stats = reject_file("traces.jsonl", "sft.jsonl", RejectionConfig(max_per_prompt=2))
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from r1lab.data.files import read_jsonl
from r1lab.eval.harness import score_completion
from r1lab.rewards.shaping import (LANGUAGE_SCRIPTS, completion_tokens, language_share, repeated_ngram_share,
                                   think_section)
from r1lab.runs.rundir import atomic_write_text

REASONS = ("truncated", "unclosed_think", "too_long", "mixed_language", "repetition", "incorrect", "duplicate",
           "over_cap")
_LETTER = re.compile(r"[^\W\d_]")


@dataclass
class RejectionConfig:
    """Which teacher samples become SFT data. Every check can be turned off."""

    require_correct: bool = True  # drop samples the row's verifier rejects
    lenient: bool = False  # an untagged, unboxed reply answers with its last number
    require_closed_think: bool = True  # drop samples without a <think> … </think> block
    drop_truncated: bool = True  # drop samples cut by the teacher's token limit (finish_reason "length")
    max_tokens: int = 0  # drop longer samples (0 = no limit)
    max_repeated_ngram_share: float = 0.3  # drop samples with more repeated n-grams (1 disables)
    ngram: int = 4  # n of those n-grams (words; each CJK character is a word)
    language: str = "en"  # target language of the chain of thought
    min_language_share: float = 0.95  # drop thinking with fewer target-language words (0 disables)
    dedupe: bool = True  # drop a repeat of a completion already kept for the same prompt
    max_per_prompt: int = 0  # keep at most this many samples per prompt (0 = no cap)

    def __post_init__(self):
        if self.language not in LANGUAGE_SCRIPTS:
            raise ValueError(f"language must be one of {sorted(LANGUAGE_SCRIPTS)}, got {self.language!r}")
        if self.ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {self.ngram}")
        if not 0 <= self.min_language_share <= 1:
            raise ValueError(f"min_language_share must be in [0, 1], got {self.min_language_share}")
        if self.max_repeated_ngram_share < 0:
            raise ValueError(f"max_repeated_ngram_share must be >= 0, got {self.max_repeated_ngram_share}")
        for name in ("max_tokens", "max_per_prompt"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = no limit), got {getattr(self, name)}")


def has_closed_think(completion: str) -> bool:
    start = completion.find("<think>")
    return start >= 0 and completion.find("</think>", start) >= 0


def _mixed_language(completion: str, cfg: RejectionConfig) -> bool:
    think = think_section(completion)
    # thinking with no letters ("3+4=7") is in no language, so it cannot mix them
    return bool(_LETTER.search(think)) and language_share(think, cfg.language) < cfg.min_language_share


def sample_failure(record: dict, cfg: RejectionConfig) -> str | None:
    """The first per-sample check `record` fails (REASONS order, before duplicate/over_cap), or None."""
    text = record["completion"]
    if cfg.drop_truncated and record.get("finish_reason") == "length":
        return "truncated"
    if cfg.require_closed_think and not has_closed_think(text):
        return "unclosed_think"
    if cfg.max_tokens and completion_tokens(text, {"completion_tokens": record.get("num_tokens")}) > cfg.max_tokens:
        return "too_long"
    if cfg.min_language_share and _mixed_language(text, cfg):
        return "mixed_language"
    if repeated_ngram_share(text, cfg.ngram) > cfg.max_repeated_ngram_share:
        return "repetition"
    if cfg.require_correct:
        if "answer" not in record:
            raise ValueError(f"sample {record.get('id')!r}/{record.get('sample_index')}: no gold 'answer' to check "
                             "against (set require_correct=false to skip correctness)")
        if score_completion(text, record, cfg.lenient)[1] < 1.0:
            return "incorrect"
    return None


def filter_samples(records: Iterable[dict], cfg: RejectionConfig) -> tuple[list[dict], dict]:
    """(kept records in input order, stats {input, kept, dropped: {reason: count}, prompts, prompts_with_kept})."""
    records = list(records)
    kept: list[dict] = []
    dropped: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    per_prompt: Counter[str] = Counter()
    for record in records:
        reason = sample_failure(record, cfg)
        key = (record["id"], " ".join(record["completion"].split()))
        if reason is None and cfg.dedupe and key in seen:
            reason = "duplicate"
        if reason is None and cfg.max_per_prompt and per_prompt[record["id"]] >= cfg.max_per_prompt:
            reason = "over_cap"
        if reason is not None:
            dropped[reason] += 1
            continue
        kept.append(record)
        seen.add(key)
        per_prompt[record["id"]] += 1
    stats = {"input": len(records), "kept": len(kept), "dropped": {reason: dropped[reason] for reason in REASONS},
             "prompts": len({r["id"] for r in records}), "prompts_with_kept": len(per_prompt)}
    return kept, stats


def stats_path(output_path: str | Path) -> Path:
    return Path(f"{output_path}.stats.json")


def sft_record(record: dict) -> dict:
    """A kept trace as SFT data: `prompt` (the question) and `completion` (the full reply), source fields kept."""
    return {"id": record["id"], "prompt": record["question"], "completion": record["completion"],
            **{k: v for k, v in record.items() if k not in ("id", "completion")}}


def _warm_math_checker(records: list[dict]) -> None:
    """math-verify's first call pays its worker start-up and lazy imports; under a short per-check deadline on a
    busy CPU that would score early correct samples as wrong, so pay it once with a generous deadline."""
    if any(r.get("verifier", "math") == "math" for r in records):
        from r1lab.rewards.math import verify_answer

        verify_answer("1", "1", timeout=120.0)


def reject_file(input_path: str | Path, output_path: str | Path, cfg: RejectionConfig) -> dict:
    """Filter a `r1lab generate` file into an SFT set at `output_path` plus `<output_path>.stats.json`; returns the stats."""
    required = ("id", "question", "completion") + (("answer",) if cfg.require_correct else ())
    records = [record for _, record in read_jsonl(input_path, required=required)]
    if cfg.require_correct:
        _warm_math_checker(records)
    kept, stats = filter_samples(records, cfg)
    output_path = Path(output_path)
    atomic_write_text(output_path, "".join(json.dumps(sft_record(r), ensure_ascii=False) + "\n" for r in kept))
    stats = {"input_file": str(input_path), "output_file": str(output_path), **stats, "config": asdict(cfg)}
    atomic_write_text(stats_path(output_path), json.dumps(stats, indent=2) + "\n")
    return stats
