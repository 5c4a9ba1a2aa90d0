"""Step-0 probe: before an R1-Zero run, how often does the base model already score?

    python benchmarks/step0.py --model gemma3-270m --tasks chain_sum,basic_arithmetic --prompts 32 --samples 4

For each candidate reasoning-gym task: P held-out-style prompts x S samples at the recipe's
temperature, the verbatim R1-Zero template (prompt style `zero`, no worked example, no system
prompt), native engine. Prints, per task, the share of replies with both tag pairs (strict format),
with an <answer>...</answer> pair, strict accuracy (tagged answer right), lenient accuracy (tagged,
else last number), the share of prompts where at least one sample is right by the lenient rule (groups whose
accuracy reward varies, which GRPO can learn from), and the mean reply length. R1_SYSTEM.md §7: rewards must let some
samples score at step 0, or GRPO gets no signal.
"""
from __future__ import annotations

import argparse
import time

from r1lab.data import TaskConfig, load_task
from r1lab.data.prompts import PromptConfig, full_completion, render
from r1lab.models import load_model, load_tokenizer
from r1lab.rewards import get_reward
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.factory import make_engine

# Easy one-digit settings: at 270M the model's arithmetic, not its reasoning, is the limit (§7).
TASK_KWARGS = {
    "chain_sum": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
    "basic_arithmetic": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
    "letter_counting": {"min_words": 1, "max_words": 1},
    "spell_backward": {},
}


def probe(engine, tokenizer, task: str, prompts: int, samples: int, params: SamplingParams, prompt_cfg) -> dict:
    rows = load_task(TaskConfig(name=task, kwargs=TASK_KWARGS.get(task, {}), train_size=prompts,
                                test_size=prompts, seed=0)).test[:prompts]
    ids = [tokenizer(render(r["question"], prompt_cfg, tokenizer), add_special_tokens=False)["input_ids"] for r in rows]
    start = time.perf_counter()
    out = engine.generate([p for p in ids for _ in range(samples)], params,
                          seeds=list(range(len(ids) * samples)))
    seconds = time.perf_counter() - start
    replies = [full_completion(c.text, prompt_cfg) for c in out]
    flat_rows = [r for r in rows for _ in range(samples)]
    score = {name: [get_reward(name)(c, **r) for c, r in zip(replies, flat_rows)]
             for name in ("format", "format_partial", "accuracy", "accuracy_lenient")}
    lenient = score["accuracy_lenient"]
    # reasoning-gym's verifiers give 0.01 to a wrong answer: only a full score counts as right here
    groups_with_signal = sum(any(v >= 1.0 for v in lenient[i * samples:(i + 1) * samples]) for i in range(len(rows)))
    return {
        "task": task, "n": len(replies),
        "tagged": sum(score["format"]) / len(replies),
        "answer_tags": sum(s >= 0.5 for s in score["format_partial"]) / len(replies),
        "acc": sum(score["accuracy"]) / len(replies), "acc_lenient": sum(lenient) / len(replies),
        "groups_scoring": groups_with_signal / len(rows),
        "tokens": sum(len(c.token_ids) for c in out) / len(out), "seconds": seconds,
        "example": replies[0][:160].replace("\n", " "),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--tasks", default=",".join(TASK_KWARGS))
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--prefill", default="<think>")
    args = parser.parse_args()
    model, tokenizer = load_model(args.model).eval(), load_tokenizer(args.model)
    engine = make_engine("native", model, tokenizer, max_batch_size=args.prompts * args.samples)
    prompt_cfg = PromptConfig(style="zero", prefill=args.prefill, example=False, system="")
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, logprobs=False)
    print(f"{args.model}: prompt style zero, prefill {args.prefill!r}, T={args.temperature}, "
          f"<= {args.max_new_tokens} new tokens, {args.prompts} prompts x {args.samples} samples")
    print("| task | n | both tag pairs | <answer> pair | accuracy (tagged) | accuracy (lenient) | prompts with a right sample | mean tokens | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for task in args.tasks.split(","):
        r = probe(engine, tokenizer, task, args.prompts, args.samples, params, prompt_cfg)
        print(f"| {r['task']} | {r['n']} | {r['tagged']:.2f} | {r['answer_tags']:.2f} | {r['acc']:.2f} | "
              f"{r['acc_lenient']:.2f} | {r['groups_scoring']:.2f} | {r['tokens']:.0f} | {r['seconds']:.0f} |", flush=True)
        print(f"  e.g. {r['example']!r}", flush=True)


if __name__ == "__main__":
    main()
