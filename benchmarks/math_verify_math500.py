"""MATH-500 check of r1lab.rewards.math.verify: recall on gold solutions, false positives on wrong answers.

  recall          each reference solution (its last \\boxed{}) verified against its own answer; target >= 99%
  false positives each reference solution against the answer of another problem whose answer differs
                  (string-wise; the next problem in the file with a different answer); target <= 0.5%
Usage: python benchmarks/math_verify_math500.py [--data data/benchmarks/math500.jsonl] [--show 10]
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from r1lab.rewards.math import verify, verifier_pool

DATA = Path(__file__).resolve().parents[1] / "data" / "benchmarks" / "math500.jsonl"


def safe_verify(solution: str, answer: str) -> float:
    try:
        return verify(solution, answer)
    except TimeoutError:
        return 0.0


def other_answer(rows: list[dict], i: int) -> str:
    """The answer of the next problem (cyclically) whose answer differs as a string from row i's."""
    for k in range(1, len(rows)):
        candidate = rows[(i + k) % len(rows)]["answer"]
        if candidate.strip() != rows[i]["answer"].strip():
            return candidate
    raise ValueError("every problem has the same answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--show", type=int, default=10, help="print up to this many failures of each kind")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        own = list(pool.map(lambda r: safe_verify(r["solution"], r["answer"]), rows))
        wrong_answers = [other_answer(rows, i) for i in range(len(rows))]
        cross = list(pool.map(lambda ra: safe_verify(ra[0]["solution"], ra[1]), zip(rows, wrong_answers)))
    elapsed = time.monotonic() - start

    misses = [f"problem {i}: solution not verified against its own answer {r['answer']!r}"
              for i, (r, s) in enumerate(zip(rows, own)) if s < 1]
    false_pos = [f"problem {i}: solution (answer {r['answer']!r}) accepted as answer {w!r}"
                 for i, (r, w, s) in enumerate(zip(rows, wrong_answers, cross)) if s > 0]
    recall = 100 * sum(own) / len(rows)
    fp_rate = 100 * sum(cross) / len(rows)
    print(f"MATH-500 ({len(rows)} problems, {args.data.name}), r1lab.rewards.math.verify:")
    print(f"  gold solution vs its own answer:      {recall:6.2f}% verified   (target >= 99%)   "
          f"{'OK' if recall >= 99 else 'MISSED'}")
    print(f"  gold solution vs a different answer:  {fp_rate:6.2f}% false positives (target <= 0.5%) "
          f"{'OK' if fp_rate <= 0.5 else 'MISSED'}")
    print(f"  checks abandoned at the deadline: {verifier_pool().timeouts}; wall time {elapsed:.1f}s")
    for item in (misses[: args.show] + false_pos[: args.show]):
        print(f"  {item}")


if __name__ == "__main__":
    main()
