"""Writes the two files recipes/r1_tiny.yaml uses: a task whose every answer is 7 (so a random 2-layer
model can learn it in seconds of SFT) and a small long-CoT cold-start set in r1lab's reply format.
Run: python data/tiny/make_r1_tiny.py"""
import json
import random
from pathlib import Path

here = Path(__file__).parent
rng = random.Random(0)
triples = [(a, b, a + b - 7) for a in range(10) for b in range(10) if a + b >= 7]
rng.shuffle(triples)
with open(here / "sevens.jsonl", "w") as fh:
    for i, (a, b, c) in enumerate(triples):
        fh.write(json.dumps({"id": f"sevens-{i}", "prompt": f"What is {a} + {b} - {c}?", "answer": "7"}) + "\n")
# Cold-start questions use two-digit terms, so they never appear in the task (or its held-out split).
cold = [(a, b, a + b - 7) for a in range(10, 15) for b in range(10, 18)]
with open(here / "sevens_cold_start.jsonl", "w") as fh:
    for a, b, c in cold:
        think = f" Add: {a} + {b} = {a + b}. Take away {c}: 7. "
        fh.write(json.dumps({"prompt": f"What is {a} + {b} - {c}?", "completion": f"<think>{think}</think> <answer>7</answer>"}) + "\n")
