"""The "aha" lens as pure functions: how often completions reflect ("wait", "let me check", 等等 …),
how reflection relates to correctness, and "aha candidates": completions that state an answer,
then re-evaluate and end on a different, correct one (R1-Zero's "Wait, wait. Wait. That's an aha
moment I can flag here.").

Everything here is plain text matching, cheap enough to run on every training step. A candidate is
for a human to read (the report lists them), not a verdict: "3 + 2 = 5. Hmm, 5 + 1 = 6." states an
intermediate result, not an answer, and still counts.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Sequence

from r1lab.rewards.extract import closing_brace, last_boxed

# Reflective phrases. Latin ones match whole words, case-insensitively; in a phrase a space matches
# any whitespace, a hyphen is optional ("double check", "re-evaluate", "reevaluate") and the last
# letter may repeat ("hmmm"). CJK ones match as substrings, so they need no spaces around them.
DEFAULT_LEXICON: tuple[str, ...] = (
    # English
    "wait", "hold on", "hmm", "aha", "let me check", "let me verify", "let me double-check", "double-check",
    "let me recheck", "check again", "verify", "verifying", "verification", "alternatively",
    "let me reconsider", "reconsider", "re-evaluate", "re-examine", "rethink", "reassess", "think again",
    "on second thought", "i made a mistake", "that's not right", "that is not right", "that's wrong",
    # Chinese (simplified and traditional)
    "等等", "等一下", "稍等", "让我检查", "讓我檢查", "检查一下", "檢查一下", "再检查", "验证", "驗證", "或者",
    "嗯", "不对", "不對", "重新考虑", "重新考慮", "再想想", "让我想想", "讓我想想", "再确认", "确认一下",
    # Japanese
    "待って", "確認", "検証", "見直", "もう一度", "あるいは", "うーん", "違う",
)

_LATIN = r"[0-9A-Za-z_\u00c0-\u024f]"  # word characters a Latin phrase must not touch ("await"); CJK may ("等等wait")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff66-\uff9f]")


def _phrase_pattern(phrase: str) -> str:
    phrase = phrase.strip()
    if _CJK.search(phrase):
        return re.escape(phrase)
    parts = []
    for i, ch in enumerate(phrase):
        if ch.isspace():
            if parts and parts[-1] == r"\s+":
                continue
            parts.append(r"\s+")
        elif ch == "-":
            parts.append(r"[-\s]?")
        elif ch in "'’":
            parts.append("['’]")
        elif i == len(phrase) - 1 and ch.isalpha():
            parts.append(re.escape(ch) + "+")
        else:
            parts.append(re.escape(ch))
    return rf"(?<!{_LATIN}){''.join(parts)}(?!{_LATIN})"


@lru_cache(maxsize=32)
def _lexicon_regex(lexicon: tuple[str, ...]) -> re.Pattern:
    phrases = sorted({p.strip() for p in lexicon if p.strip()}, key=len, reverse=True)  # longest wins at a position
    if not phrases:
        return re.compile(r"(?!x)x")  # matches nothing
    return re.compile("|".join(_phrase_pattern(p) for p in phrases), re.IGNORECASE)


def reflection_spans(text: str, lexicon: Sequence[str] = DEFAULT_LEXICON) -> list[tuple[int, int]]:
    """(start, end) of every reflective phrase in `text`, left to right, never overlapping."""
    return [m.span() for m in _lexicon_regex(tuple(lexicon)).finditer(text)]


def reflection_count(text: str, lexicon: Sequence[str] = DEFAULT_LEXICON) -> int:
    """Reflective phrases in `text`: "Wait, let me check" is 2; "await" and "waiting" are 0."""
    return len(reflection_spans(text, lexicon))


# ---------------------------------------------------------------------------- stated answers
_NUM = r"-?\d(?:[\d,]*\d)?(?:\.\d+)?"
_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "the answer is 12", "final answer: 12", "answer = 12", 答案是 12, 答えは12
_SAYS = re.compile(r"(?:\banswer\s*(?:is\s*:?|:|=)|答案\s*(?:是|为|為|:|：)|答えは)\s*"
                   r"(?!\\boxed|\\fbox|<answer>)([^\n<]{1,60}?)"  # the answer, up to the end of its sentence
                   r"(?=[.,;!?]?\s*(?:\n|$|<)|[.,;!?](?:\s|$)|[。，；！？])", re.IGNORECASE)
# "= 12" closing an equation, not the first term of a longer right-hand side ("= 12 + 3"), not "<=" or "=="
_EQUALS = re.compile(r"(?<![<>!=])=(?!=)\s*(" + _NUM + r")(?![\d.]*\s*[-+*/×÷^]\s*[\d(])(?!\.\d)")
_LEADING_NUMBER = re.compile(r"\$?(" + _NUM + r")\$?(?![\w.,]*[A-Za-z0-9_])(?!\s*[-+*/×÷^=]\s*[\d(])")
_PREFIX = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)\s*", re.IGNORECASE)


def _boxed_spans(text: str) -> list[tuple[int, int, str]]:
    out = []
    for m in _BOXED.finditer(text):
        i = m.end() - 1
        j = closing_brace(text, i)
        if j is not None:
            out.append((m.start(), j + 1, text[i + 1 : j]))
    return out


def answer_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, answer) for each answer `text` states, in order: <answer>…</answer>, \\boxed{…},
    "the answer is …", "= 12". Where statements overlap ("<answer>\\boxed{12}</answer>") the first wins."""
    found = [(m.start(), m.end(), m.group(1)) for m in _TAG.finditer(text)]
    found += _boxed_spans(text)
    pos = 0
    while m := _SAYS.search(text, pos):
        number = _LEADING_NUMBER.match(m.group(1))  # "the answer is 12 because …" states 12
        end = m.start(1) + number.end(1) if number else m.end()
        found.append((m.start(), end, number.group(1) if number else m.group(1)))
        pos = end
    found += [(m.start(), m.end(), m.group(1)) for m in _EQUALS.finditer(text)]
    found.sort(key=lambda s: (s[0], -s[1]))
    kept: list[tuple[int, int, str]] = []
    for start, end, answer in found:
        if kept and start < kept[-1][1]:
            continue
        answer = answer.strip()
        if answer:
            kept.append((start, end, answer))
    return kept


def answer_trajectory(text: str) -> list[str]:
    """The successive answers a completion states, as written (repeats kept): "7 + 5 = 12. Wait, 7 + 6 = 13.
    <answer>13</answer>" -> ["12", "13", "13"]."""
    return [answer for _, _, answer in answer_spans(text)]


def normalize_answer(answer: str) -> str:
    """A comparison key: the \\boxed{} content, without "the answer is", $…$, trailing dots, thousands
    commas and any left-hand side ("x = 5" -> "5"); numbers compare by value ("12.0" == "12")."""
    text = last_boxed(answer) or answer
    text = _PREFIX.sub("", text.strip()).strip().strip("$").strip().rstrip(".。").strip()
    if "=" in text:  # "12 + 3 = 15" answers 15
        text = text.rsplit("=", 1)[1].strip()
    bare = text.replace(",", "")
    if re.fullmatch(_NUM, bare):
        value = float(bare)
        return str(int(value)) if value.is_integer() else repr(value)
    return " ".join(text.lower().split())


def is_aha_candidate(text: str, correct_final: bool, lexicon: Sequence[str] = DEFAULT_LEXICON) -> bool:
    """True when `text` states an answer, a reflective phrase follows, and it ends on a different answer
    that is correct (`correct_final`, as the verifier judged the completion)."""
    if not correct_final:
        return False
    answers = answer_spans(text)
    if len(answers) < 2:
        return False
    final = normalize_answer(answers[-1][2])
    for start, end in reflection_spans(text, lexicon):
        before = [a for a in answers if a[1] <= start]
        if before and answers[-1][0] >= end and normalize_answer(before[-1][2]) != final:
            return True
    return False


def aha_step_metrics(completions: list[str], correct: list[bool],
                     lexicon: Sequence[str] = DEFAULT_LEXICON) -> tuple[dict[str, float], list[int]]:
    """One step's aha metrics and the indices of its aha candidates.

    Accuracies come with their n (`…_n`) so a reader can put an interval on them; a group with no
    completions has no accuracy key at all (never NaN).
    """
    if len(completions) != len(correct):
        raise ValueError(f"aha_step_metrics: {len(completions)} completions but {len(correct)} correctness flags")
    if not completions:
        return {}, []
    counts = [reflection_count(c, lexicon) for c in completions]
    with_r = [ok for ok, k in zip(correct, counts) if k > 0]
    without = [ok for ok, k in zip(correct, counts) if k == 0]
    candidates = [i for i, (c, ok) in enumerate(zip(completions, correct)) if is_aha_candidate(c, bool(ok), lexicon)]
    n = len(completions)
    metrics = {"aha/reflection_rate": len(with_r) / n, "aha/reflections_per_completion": sum(counts) / n}
    if with_r:
        metrics["aha/accuracy_with_reflection"] = sum(map(bool, with_r)) / len(with_r)
    metrics["aha/accuracy_with_reflection_n"] = float(len(with_r))
    if without:
        metrics["aha/accuracy_without_reflection"] = sum(map(bool, without)) / len(without)
    metrics["aha/accuracy_without_reflection_n"] = float(len(without))
    metrics["aha/candidates"] = float(len(candidates))
    return metrics, candidates
