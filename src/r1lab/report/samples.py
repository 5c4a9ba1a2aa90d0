"""Completions cut into highlighted segments (think, answer, tags, reflective phrases, stated answers) and
the JSON the page's sample browser and aha list draw from. The page only ever sets textContent."""
from __future__ import annotations

import re
from typing import Sequence

from r1lab.eval.aha import DEFAULT_LEXICON, answer_spans, is_aha_candidate, reflection_count, reflection_spans
from r1lab.report.load import RunData
from r1lab.rewards.extract import last_boxed

_TAGS = re.compile(r"</?(?:think|answer)>")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
CORRECTNESS_REWARDS = ("accuracy", "accuracy_lenient")
MAX_AHA_LISTED = 500


def segments(text: str, lexicon: Sequence[str] = DEFAULT_LEXICON) -> list[list[str]]:
    """[[css classes, text], …] covering `text` in order, e.g. [["tag", "<think>"], ["think", "2+2"],
    ["think reflect", "Wait"], …]. Classes: think, answer, tag, reflect, stated (an answer it states)."""
    n = len(text)
    base = ["plain"] * n
    close = text.find("</think>")
    opening = text.find("<think>")
    if close >= 0 or opening >= 0:  # a prefilled <think> leaves only the closing tag in the text
        start = opening + len("<think>") if 0 <= opening and (close < 0 or opening < close) else 0
        end = close if close >= 0 else n
        if close < 0:
            after = text.find("<answer>", start)
            end = after if after >= 0 else n
        base[start:end] = ["think"] * (end - start)
    answers = [m.span(1) for m in _ANSWER.finditer(text)]
    if not answers and (boxed := last_boxed(text)) is not None:
        at = text.rfind(boxed)
        answers = [(at, at + len(boxed))] if at >= 0 else []
    for a, b in answers:
        base[a:b] = ["answer"] * (b - a)
    for m in _TAGS.finditer(text):
        base[m.start():m.end()] = ["tag"] * (m.end() - m.start())
    reflect = [False] * n
    for a, b in reflection_spans(text, lexicon):
        reflect[a:b] = [True] * (b - a)
    stated = [False] * n
    for a, b, _ in answer_spans(text):  # answers stated along the way; the final one is already marked
        if not any(label in ("answer", "tag") for label in base[a:b]):
            stated[a:b] = [True] * (b - a)
    out: list[list[str]] = []
    last = None
    for i, ch in enumerate(text):
        classes = " ".join([base[i]] + (["reflect"] if reflect[i] else []) + (["stated"] if stated[i] else []))
        if classes == last:
            out[-1][1] += ch
        else:
            out.append([classes, ch])
            last = classes
    return out


def is_correct(sample: dict) -> bool | None:
    """Whether a logged sample's answer was right: its accuracy reward (strict or lenient) is full."""
    rewards = sample.get("rewards") or {}
    scores = [rewards[k] for k in CORRECTNESS_REWARDS if isinstance(rewards.get(k), (int, float))]
    return max(scores) >= 1.0 - 1e-9 if scores else None


def sample_payload(sample: dict, lexicon: Sequence[str] = DEFAULT_LEXICON) -> dict:
    text = str(sample.get("completion", ""))
    correct = is_correct(sample)
    payload = {key: sample[key] for key in ("step", "id", "question", "answer", "reward", "advantage")
               if key in sample}
    payload.update(
        rewards={k: v for k, v in (sample.get("rewards") or {}).items() if isinstance(v, (int, float))},
        segments=segments(text, lexicon), correct=correct, reflections=reflection_count(text, lexicon),
        aha=bool(correct) and is_aha_candidate(text, True, lexicon),
        trajectory=[a for _, _, a in answer_spans(text)],
    )
    return payload


def browser_payload(run: RunData, lexicon: Sequence[str] = DEFAULT_LEXICON) -> dict:
    """{"name", "steps": [...], "samples": {step: [sample, …]}} for one run's logged samples."""
    by_step: dict[int, list[dict]] = {}
    for sample in run.samples:
        step = sample.get("step")
        if isinstance(step, (int, float)) and not isinstance(step, bool):
            by_step.setdefault(int(step), []).append(sample_payload(sample, lexicon))
    steps = sorted(by_step)
    return {"name": run.name, "steps": steps, "samples": {str(s): by_step[s] for s in steps}}


def aha_payload(run: RunData, lexicon: Sequence[str] = DEFAULT_LEXICON) -> list[dict]:
    """The run's aha candidates: those the trainer logged (aha.jsonl), then any found among samples.jsonl."""
    out, seen = [], set()
    for source, records in (("aha.jsonl", run.aha), ("samples.jsonl", run.samples)):
        for record in records:
            key = (record.get("step"), record.get("id"), record.get("completion"))
            if key in seen:
                continue
            if source == "samples.jsonl":
                if not is_correct(record) or not is_aha_candidate(str(record.get("completion", "")), True, lexicon):
                    continue
            seen.add(key)
            payload = sample_payload(record, lexicon)
            payload["aha"], payload["source"] = True, source
            if payload["correct"] is None:
                payload["correct"] = True  # a logged candidate ends on a correct answer by definition
            out.append(payload)
    out.sort(key=lambda p: (p.get("step") if isinstance(p.get("step"), (int, float)) else -1))
    return out[-MAX_AHA_LISTED:]
