"""Where does thinking pay at step 0? Accuracy with a forced immediate answer vs an answer after reasoning.

RL can only amplify what the model already does now and then (R1_SYSTEM.md §7): if sampled reasoning
does not beat answering at once on a task, longer reasoning has nothing to be rewarded for there.
For each task level, the same held-out prompts (the recipe's prompt: template, example, system prompt)
under three prefills of the reply, sampled at the paper's evaluation setting (T 0.6, top-p 0.95):

- `answer now`: `<think>\\n</think>\\n<answer>` prefilled; the model writes only the answer (<= 16 tokens).
- `think`: the recipe's prefill (`<think>`), as in training; up to `max_new_tokens` of reasoning, then its answer.
- `worked steps` (chains of + and - only): the right running results prefilled inside the think block
  (`75 - 32 = 43`, `43 + 69 = 112`, ...), then `<answer>`: the ceiling that right reasoning would reach.

The forced conditions are scored twice: on the tagged answer (`strict`: the text after `<answer>` must be the
number) and on its last number (`lenient`), because a base model that has not seen the tags may restate the
steps after `<answer>`; `think` with the training reward's rule (the tagged answer, else the last number).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from r1lab.data import TaskConfig, load_task
from r1lab.data.prompts import PromptConfig, render
from r1lab.eval.aha import reflection_count
from r1lab.eval.metrics import difference_interval, wilson_interval
from r1lab.rewards import get_reward
from r1lab.rollout.base import SamplingParams

ANSWER_NOW = "<think>\n</think>\n<answer>"
LEVEL_KWARGS = {  # task -> (first, second) level numbers -> reasoning-gym kwargs
    "chain_sum": lambda terms, digits: {"min_terms": terms, "max_terms": terms, "min_digits": digits,
                                        "max_digits": digits},
    "basic_arithmetic": lambda terms, digits: {"min_terms": terms, "max_terms": terms, "min_digits": digits,
                                               "max_digits": digits},
    "countdown": lambda numbers, _: {"min_numbers": numbers, "max_numbers": numbers},
}
CONDITIONS = ("answer now", "answer now, last number", "think", "worked steps", "worked steps, last number")
_CHAIN = re.compile(r"(-?\d+)((?:\s*[+-]\s*\d+)+)\s*=?\s*$")


@dataclass
class ThinkingPaysConfig:
    """Levels are `task:a:b` (chain_sum / basic_arithmetic: terms:digits; countdown: numbers:0)."""

    levels: list[str] = field(default_factory=lambda: ["chain_sum:3:1", "chain_sum:4:1", "chain_sum:5:1"])
    prompts: int = 48
    samples: int = 2
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        for level in self.levels:
            parse_level(level)


def parse_level(level: str) -> tuple[str, dict]:
    """`chain_sum:3:1` -> ("chain_sum", its reasoning-gym kwargs); a clear error for anything else."""
    parts = level.split(":")
    if len(parts) != 3 or parts[0] not in LEVEL_KWARGS or not all(p.isdigit() for p in parts[1:]):
        raise ValueError(f"thinking_pays level {level!r}: expected task:a:b with task one of "
                         f"{', '.join(LEVEL_KWARGS)} and a, b whole numbers (e.g. chain_sum:3:1)")
    return parts[0], LEVEL_KWARGS[parts[0]](int(parts[1]), int(parts[2]))


def worked_steps(question: str) -> str | None:
    """The running results of a left-to-right chain of + and -, one line per operation; None for anything else."""
    text = re.sub(r"[().]", " ", question)  # basic_arithmetic writes "Calculate ( -5 + 1 + 6 )."
    match = _CHAIN.search(text)
    if not match or re.search(r"[*/×÷+-]\s*$", text[:match.start()]):  # the chain must be the whole expression
        return None
    total, lines = int(match.group(1)), []
    for sign, number in re.findall(r"([+-])\s*(\d+)", match.group(2)):
        result = total + int(number) if sign == "+" else total - int(number)
        lines.append(f"{total} {sign} {number} = {result}")
        total = result
    return "<think>\n" + "\n".join(lines) + "\n</think>\n<answer>"


def _hits(scores: list[float]) -> list[int]:
    """[right, n]: a verifier's partial credit (0.01) is not a right answer."""
    return [sum(score >= 1.0 for score in scores), len(scores)]


def measure_level(engine, tokenizer, prompt: PromptConfig, level: str, cfg: ThinkingPaysConfig) -> dict:
    """One level's record: [right, n] per condition (None where it does not apply), mean think length, reflection."""
    task, kwargs = parse_level(level)
    rows = load_task(TaskConfig(name=task, kwargs=kwargs, train_size=cfg.prompts, test_size=cfg.prompts,
                                seed=0)).test[:cfg.prompts]
    flat_rows = [r for r in rows for _ in range(cfg.samples)]
    accuracy, lenient = get_reward("accuracy"), get_reward("accuracy_lenient")
    seeds = list(range(len(rows) * cfg.samples))

    def sample(ids: list[list[int]], params: SamplingParams) -> list:
        return engine.generate([p for p in ids for _ in range(cfg.samples)], params, seeds=seeds)

    def forced(prefills: list[str]) -> tuple[list[int], list[int]]:
        ids = [tokenizer(render(r["question"], prompt, tokenizer).removesuffix(prompt.prefill) + prefill,
                         add_special_tokens=False)["input_ids"] for r, prefill in zip(rows, prefills)]
        out = sample(ids, SamplingParams(max_new_tokens=16, temperature=0.6, top_p=0.95, stop=["</answer>"],
                                         logprobs=False))
        return (_hits([accuracy("<answer>" + c.text + "</answer>", **r) for c, r in zip(out, flat_rows)]),
                _hits([lenient(c.text, **r) for c, r in zip(out, flat_rows)]))

    ids = [tokenizer(render(r["question"], prompt, tokenizer), add_special_tokens=False)["input_ids"] for r in rows]
    out = sample(ids, SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=0.6, top_p=0.95,
                                     logprobs=False).ending_at(prompt.stops))
    replies = [prompt.prefill + c.text for c in out]
    steps = [worked_steps(r["question"]) for r in rows]
    worked = forced(steps) if all(steps) else (None, None)
    counts = dict(zip(CONDITIONS, (*forced([ANSWER_NOW] * len(rows)),
                                   _hits([lenient(reply, **r) for reply, r in zip(replies, flat_rows)]), *worked)))
    return {"level": level, "counts": counts,
            "think_tokens_mean": sum(len(c.token_ids) for c in out) / len(out),
            "think_reflective": sum(reflection_count(reply) > 0 for reply in replies) / len(replies)}


def cell(count: list[int] | None) -> str:
    if count is None:
        return "n/a"
    hits, n = count
    low, high = wilson_interval(hits, n)
    return f"{hits}/{n} = {hits / n:.2f} [{low:.2f}, {high:.2f}]"


TABLE_HEAD = ["| task | level | answer now | answer now, last number | think | think: mean tokens | think: reflective "
              "| worked steps | worked steps, last number | think − answer now [95% CI] |",
              "|---|---|---|---|---|---|---|---|---|---|"]


def table_row(record: dict) -> str:
    task, a, b = record["level"].split(":")
    c = record["counts"]
    return (f"| {task} | {a}:{b} | {cell(c['answer now'])} | {cell(c['answer now, last number'])} | "
            f"{cell(c['think'])} | {record['think_tokens_mean']:.0f} | {record['think_reflective']:.2f} | "
            f"{cell(c['worked steps'])} | {cell(c['worked steps, last number'])} | "
            "{:+.2f} [{:+.2f}, {:+.2f}] |".format(*thinking_gain(record)))


def thinking_gain(record: dict) -> tuple[float, float, float]:
    """think − answer now (strict), with its 95% interval: whether reasoning pays on this level at step 0."""
    (t_hits, t_n), (a_hits, a_n) = record["counts"]["think"], record["counts"]["answer now"]
    return difference_interval(t_hits, t_n, a_hits, a_n)
