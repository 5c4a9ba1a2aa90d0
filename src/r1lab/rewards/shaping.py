"""Shaping rewards from R1 and its successors: tag counts, language consistency, length, repetition.

Lengths are in tokens: the row's `completion_tokens`, the real count of generated tokens that the
trainer passes (score_batch's `completion_ids`); called without it (a notebook, a log), an estimate of
UTF-8 bytes / 4 (about right for English BPE vocabularies; a CJK character is 3 bytes, ~0.75 token). Parameterised rewards are built by `make_*` factories; the registered names use the
defaults below, and another setting is one line in your own file:
    register_reward("overlong_8k")(make_overlong_penalty(max_len=8192, cache_len=2048))
"""
from __future__ import annotations

import math
import re
from typing import Callable

from r1lab.rewards.extract import extract_answer
from r1lab.reward_registry import get_verifier, register_reward

TAGS = ("<think>", "</think>", "<answer>", "</answer>")

# Scripts by Unicode block. CJK text has no spaces, so each ideograph/kana counts as one word.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KANA = "\u3040-\u309f\u30a0-\u30ff"
_HANGUL = "\uac00-\ud7af\u1100-\u11ff"
_CYRILLIC = "\u0400-\u04ff"
_LATIN = "A-Za-z\u00c0-\u024f"
_SCRIPTS = {"latin": _LATIN, "han": _HAN, "kana": _KANA, "hangul": _HANGUL, "cyrillic": _CYRILLIC}
_WORD = re.compile(f"[{_LATIN}]+|[{_CYRILLIC}]+|[{_HANGUL}]+|[{_HAN}]|[{_KANA}]")
_TOKEN = re.compile(f"[{_HAN}{_KANA}]|[^\\s{_HAN}{_KANA}]+")  # repetition: CJK chars + whitespace-separated rest
# Which scripts count as "the target language" for each language code.
LANGUAGE_SCRIPTS = {
    "en": {"latin"}, "fr": {"latin"}, "de": {"latin"}, "es": {"latin"}, "it": {"latin"}, "pt": {"latin"},
    "zh": {"han"}, "ja": {"han", "kana"}, "ko": {"hangul", "han"}, "ru": {"cyrillic"}, "uk": {"cyrillic"},
}


@register_reward("tag_count")
def tag_count(completion: str, **row) -> float:
    """0.25 for each of <think>, </think>, <answer>, </answer> that appears exactly once."""
    return sum(0.25 for tag in TAGS if completion.count(tag) == 1)


def think_section(completion: str) -> str:
    """The reasoning: inside <think>...</think>; before </think> if the opening was prefilled; else all."""
    end = completion.find("</think>")
    head = completion if end < 0 else completion[:end]
    start = head.find("<think>")
    return head[start + len("<think>"):] if start >= 0 else head


def _script(word: str) -> str:
    for name, chars in _SCRIPTS.items():
        if re.match(f"[{chars}]", word):
            return name
    return "other"


def language_share(text: str, language: str = "en") -> float:
    """Share of words in `text` written in the target language's script(s); 0 for text with no words."""
    if language not in LANGUAGE_SCRIPTS:
        raise ValueError(f"language {language!r} not supported; known: {', '.join(sorted(LANGUAGE_SCRIPTS))}")
    words = _WORD.findall(text)
    if not words:
        return 0.0
    target = LANGUAGE_SCRIPTS[language]
    return sum(_script(w) in target for w in words) / len(words)


@register_reward("language_consistency")
def language_consistency(completion: str, **row) -> float:
    """R1's language-consistency reward: share of target-language words in the think section (row `language`, default en)."""
    return language_share(think_section(completion), row.get("language") or "en")


def completion_tokens(completion: str, row: dict) -> int:
    if row.get("completion_tokens") is not None:
        return int(row["completion_tokens"])
    return math.ceil(len(completion.encode("utf-8")) / 4)


def _is_correct(completion: str, row: dict) -> bool:
    return get_verifier(row.get("verifier", "math"))(extract_answer(completion), row) >= 1.0


def make_cosine_length(max_len: int = 1024, correct: tuple[float, float] = (1.0, 0.5),
                       wrong: tuple[float, float] = (-1.0, -0.5), exceed: float | None = None) -> Callable[..., float]:
    """Cosine-scaled length reward (Yeo et al. 2025, "Demystifying Long Chain-of-Thought Reasoning").

    A correct reply earns `correct[0]` at length 0 falling to `correct[1]` at `max_len` (shorter is
    better); a wrong one `wrong[0]` at 0 rising to `wrong[1]` (thinking longer is less bad). Past
    `max_len`: `exceed` if given, else the value at `max_len`.
    """
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")

    def cosine_length(completion: str, **row) -> float:
        length = completion_tokens(completion, row)
        if length > max_len and exceed is not None:
            return exceed
        at_zero, at_max = correct if _is_correct(completion, row) else wrong
        progress = min(length, max_len) / max_len
        return at_max + 0.5 * (at_zero - at_max) * (1 + math.cos(math.pi * progress))

    return cosine_length


def make_overlong_penalty(max_len: int = 1024, cache_len: int = 256) -> Callable[..., float]:
    """DAPO's soft overlong punishment: 0 up to max_len - cache_len, then linearly to -1 at max_len, -1 beyond."""
    if not 0 < cache_len <= max_len:
        raise ValueError(f"need 0 < cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}")

    def overlong_penalty(completion: str, **row) -> float:
        length = completion_tokens(completion, row)
        free = max_len - cache_len
        if length <= free:
            return 0.0
        if length > max_len:
            return -1.0
        return (free - length) / cache_len

    return overlong_penalty


def repeated_ngram_share(text: str, n: int = 4) -> float:
    """1 - distinct/total word n-grams of `text` (lower-cased; each CJK character is a word); 0 below n words."""
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    tokens = _TOKEN.findall(text.lower())
    if len(tokens) < n:
        return 0.0
    ngrams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return 1 - len(set(ngrams)) / len(ngrams)


def make_repetition_penalty(ngram_size: int = 4, max_penalty: float = -1.0) -> Callable[..., float]:
    """N-gram repetition penalty (Yeo et al. 2025): max_penalty × share of repeated n-grams; 0 for no repeats."""
    if ngram_size < 1 or max_penalty > 0:
        raise ValueError(f"need ngram_size >= 1 and max_penalty <= 0, got {ngram_size}, {max_penalty}")

    def repetition_penalty(completion: str, **row) -> float:
        return max_penalty * repeated_ngram_share(completion, ngram_size)

    return repetition_penalty


register_reward("cosine_length")(make_cosine_length())
register_reward("overlong_penalty")(make_overlong_penalty())
register_reward("repetition_penalty")(make_repetition_penalty())
