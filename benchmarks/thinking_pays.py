"""Where does thinking pay at step 0? Accuracy with a forced immediate answer vs an answer after reasoning.

    python benchmarks/thinking_pays.py --recipe zero_smollm2 --prompts 24 --samples 2
    python benchmarks/thinking_pays.py --recipe zero_gemma3_base --levels chain_sum:3:1,chain_sum:5:2

The conditions and their scoring: r1lab.eval.thinking_pays (`r1lab paper-mini` runs the same measurement as
its step-0 stage). Every cell: right samples / n with its 95% Wilson interval; `think` also shows its mean
length and the share of replies with a reflective phrase (r1lab.eval.aha); the last column is think − answer
now with its 95% interval (Newcombe).
"""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from r1lab.config import load_config
from r1lab.eval.thinking_pays import TABLE_HEAD, ThinkingPaysConfig, measure_level, table_row
from r1lab.models import load_model, load_tokenizer
from r1lab.precision import cpu_name
from r1lab.resources import recipe_path
from r1lab.rl.config import ZeroConfig
from r1lab.rollout.factory import make_engine

DEFAULT_LEVELS = "chain_sum:3:1,chain_sum:5:1,chain_sum:8:1,chain_sum:3:2,chain_sum:5:2,basic_arithmetic:3:1,countdown:3:0"


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
    measure = ThinkingPaysConfig(levels=args.levels.split(","), prompts=args.prompts, samples=args.samples,
                                 max_new_tokens=args.max_new_tokens)
    model, tokenizer = load_model(cfg.model.name).eval(), load_tokenizer(cfg.model.name)
    engine = make_engine(cfg.engine, model, tokenizer, max_batch_size=args.prompts * args.samples,
                         **cfg.engine_options)
    lines = [f"### {cfg.model.name}, prompt style {cfg.prompt.style} (recipe {args.recipe})", "",
             f"{datetime.date.today()}, {cpu_name()}; {args.prompts} held-out prompts x {args.samples} samples, "
             f"T 0.6, top-p 0.95, think <= {args.max_new_tokens} tokens.", "", *TABLE_HEAD]
    print("\n".join(lines), flush=True)
    for level in measure.levels:
        lines.append(table_row(measure_level(engine, tokenizer, cfg.prompt, level, measure)))
        print(lines[-1], flush=True)
    if args.doc:
        with Path(args.doc).open("a") as doc:
            doc.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
