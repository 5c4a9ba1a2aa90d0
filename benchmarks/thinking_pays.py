"""Where does thinking pay at step 0? Accuracy with a forced immediate answer vs an answer after reasoning.

    python benchmarks/thinking_pays.py --recipe zero_smollm2 --prompts 24 --samples 2
    python benchmarks/thinking_pays.py --recipe zero_gemma3_base --levels chain_sum:3:1,chain_sum:5:2

RL can only amplify what the model already does now and then (R1_SYSTEM.md §7): if sampled reasoning
does not beat answering at once on a task, longer reasoning has nothing to be rewarded for there.
For each task level, the same held-out prompts (the recipe's model and prompt: template, example,
system prompt) under three prefills of the reply, sampled at the paper's evaluation setting
(T = 0.6, top-p 0.95), `--samples` per prompt:

- `answer now`: `<think>\\n</think>\\n<answer>` prefilled; the model writes only the answer (<= 16 tokens).
- `think`: `<think>` prefilled, as in training; up to --max-new-tokens of reasoning, then its answer.
- `worked steps` (chains of + and - only): the right running results prefilled inside the think block
  (`75 - 32 = 43`, `43 + 69 = 112`, ...), then `<answer>`: the ceiling that right reasoning would reach.

The forced conditions are scored twice: on the tagged answer the model wrote (`accuracy`: the text
after `<answer>` must be the number) and on its last number (`accuracy_lenient`), because a base model
that has not seen the tags may restate the steps after `<answer>` instead of the bare result; `think`
with the training reward's rule (`accuracy_lenient`: the tagged answer, else the last number). Every cell: right
samples / n with its 95% Wilson interval; `think` also shows its mean length and the share of replies
with a reflective phrase (r1lab.eval.aha).
"""
from __future__ import annotations

import argparse
import datetime
import re
from pathlib import Path

from r1lab.config import load_config
from r1lab.data import TaskConfig, load_task
from r1lab.data.prompts import render
from r1lab.eval.aha import reflection_count
from r1lab.eval.metrics import wilson_interval
from r1lab.models import load_model, load_tokenizer
from r1lab.precision import cpu_name
from r1lab.resources import recipe_path
from r1lab.rewards import get_reward
from r1lab.rl.config import ZeroConfig
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.factory import make_engine

ANSWER_NOW = "<think>\n</think>\n<answer>"
LEVEL_KWARGS = {  # task -> (first, second) level numbers -> reasoning-gym kwargs
    "chain_sum": lambda terms, digits: {"min_terms": terms, "max_terms": terms, "min_digits": digits,
                                        "max_digits": digits},
    "basic_arithmetic": lambda terms, digits: {"min_terms": terms, "max_terms": terms, "min_digits": digits,
                                               "max_digits": digits},
    "countdown": lambda numbers, _: {"min_numbers": numbers, "max_numbers": numbers},
}
DEFAULT_LEVELS = "chain_sum:3:1,chain_sum:5:1,chain_sum:8:1,chain_sum:3:2,chain_sum:5:2,basic_arithmetic:3:1,countdown:3:0"
_CHAIN = re.compile(r"(-?\d+)((?:\s*[+-]\s*\d+)+)\s*=?\s*$")


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


def sample(engine, prompts: list[list[int]], samples: int, params: SamplingParams) -> list:
    return engine.generate([p for p in prompts for _ in range(samples)], params,
                           seeds=list(range(len(prompts) * samples)))


def cell(right: list[float]) -> str:
    hits = sum(value >= 1.0 for value in right)  # a verifier's partial credit (0.01) is not a right answer
    low, high = wilson_interval(hits, len(right))
    return f"{hits}/{len(right)} = {hits / len(right):.2f} [{low:.2f}, {high:.2f}]"


def measure(engine, tokenizer, cfg: ZeroConfig, task: str, kwargs: dict, args) -> list[str]:
    rows = load_task(TaskConfig(name=task, kwargs=kwargs, train_size=args.prompts, test_size=args.prompts,
                                seed=0)).test[:args.prompts]
    flat_rows = [r for r in rows for _ in range(args.samples)]
    accuracy, lenient = get_reward("accuracy"), get_reward("accuracy_lenient")

    def forced(prefills: list[str]) -> tuple[str, str]:
        """Strict (the tagged answer is the number) and lenient (its last number) accuracy cells."""
        ids = [tokenizer(render(r["question"], cfg.prompt, tokenizer).removesuffix(cfg.prompt.prefill) + prefill,
                         add_special_tokens=False)["input_ids"] for r, prefill in zip(rows, prefills)]
        params = SamplingParams(max_new_tokens=16, temperature=0.6, top_p=0.95, stop=["</answer>"], logprobs=False)
        out = sample(engine, ids, args.samples, params)
        texts = ["<answer>" + c.text + "</answer>" for c in out]
        return (cell([accuracy(t, **r) for t, r in zip(texts, flat_rows)]),
                cell([lenient(c.text, **r) for c, r in zip(out, flat_rows)]))

    ids = [tokenizer(render(r["question"], cfg.prompt, tokenizer), add_special_tokens=False)["input_ids"] for r in rows]
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.6, top_p=0.95, logprobs=False)
    out = sample(engine, ids, args.samples, params)
    replies = [cfg.prompt.prefill + c.text for c in out]
    thought = [lenient(reply, **r) for reply, r in zip(replies, flat_rows)]
    lengths = [len(c.token_ids) for c in out]
    steps = [worked_steps(r["question"]) for r in rows]
    worked = forced(steps) if all(steps) else ("n/a", "n/a")
    reflective = sum(reflection_count(reply) > 0 for reply in replies) / len(replies)
    return [*forced([ANSWER_NOW] * len(rows)), cell(thought), f"{sum(lengths) / len(lengths):.0f}",
            f"{reflective:.2f}", *worked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="zero_smollm2", help="its model and prompt are used")
    parser.add_argument("--levels", default=DEFAULT_LEVELS, help="task:a:b,... (chain_sum/basic_arithmetic: "
                                                                  "terms:digits; countdown: numbers:0)")
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--doc", default=None, help="also append the table to this markdown file")
    parser.add_argument("--set", action="append", default=[], help="a recipe override, repeatable")
    args = parser.parse_args()
    cfg = load_config(ZeroConfig, str(recipe_path(args.recipe)), args.set)
    model, tokenizer = load_model(cfg.model.name).eval(), load_tokenizer(cfg.model.name)
    engine = make_engine(cfg.engine, model, tokenizer, max_batch_size=args.prompts * args.samples,
                         **cfg.engine_options)
    lines = [f"### {cfg.model.name}, prompt style {cfg.prompt.style} (recipe {args.recipe})", "",
             f"{datetime.date.today()}, {cpu_name()}; {args.prompts} held-out prompts x {args.samples} samples, "
             f"T 0.6, top-p 0.95, think <= {args.max_new_tokens} tokens.", "",
             "| task | level | answer now | answer now, last number | think | think: mean tokens | think: reflective "
             "| worked steps | worked steps, last number |",
             "|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for level in args.levels.split(","):
        task, a, b = level.split(":")
        cells = measure(engine, tokenizer, cfg, task, LEVEL_KWARGS[task](int(a), int(b)), args)
        lines.append(f"| {task} | {a}:{b} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    if args.doc:
        with Path(args.doc).open("a") as doc:
            doc.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
