"""Code correctness: run the reply's program against the row's tests in the sandbox.

Rows carry their tests in one of three shapes (top level or under `metadata`):
  HumanEval  `test` (code defining `check(candidate)`) + `entry_point`; optional `prompt`, the
             function header, prepended when the program does not define the entry point.
  MBPP       `test_list`: assert statements, each one test.
  stdio      `tests`: [{"input": str, "output": str}], the program reads stdin, prints the answer.
Rewards `code` (fraction of tests passed) and `code_all` (1 only if all pass) score the last fenced
code block of the reply; verifiers of the same names score an already-extracted answer.

A test counts only when the harness writes `<nonce> pass <i>` after it, with a nonce the program
cannot know in advance: exiting early with status 0 (os._exit tricks) earns nothing.
"""
from __future__ import annotations

import ast
import json
import secrets
import threading
from typing import Any

from r1lab.rewards.extract import extract_code
from r1lab.reward_registry import register_reward, register_verifier
from r1lab.sandbox import Limits, SandboxPool, run_files

# Runs the solution, then each step in one namespace; reports passes on fd 1 as they happen, so a
# later hang or crash keeps the credit already earned.
HARNESS = """\
import json as _json, os as _os, sys as _sys
_nonce = _sys.stdin.readline().strip()
_steps = _json.load(open("steps.json"))
_ns = {"__name__": "solution"}
exec(compile(open("solution.py").read(), "solution.py", "exec"), _ns)
for _i, _step in enumerate(_steps):
    try:
        exec(compile(_step["code"], f"test_{_i}", "exec"), _ns)
    except BaseException:
        continue
    if _step["counts"]:
        _os.write(1, f"\\n{_nonce} pass {_i}\\n".encode())
"""

_pool: SandboxPool | None = None
_pool_lock = threading.Lock()


def _shared_pool() -> SandboxPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = SandboxPool(workers=4)
        return _pool


def _field(row: dict, key: str) -> Any:
    return row[key] if key in row else (row.get("metadata") or {}).get(key)


def humaneval_steps(test: str, entry_point: str) -> list[dict]:
    """Split a HumanEval `check(candidate)` into steps: each top-level statement holding an assert is a test."""
    module = ast.parse(test)
    checks = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if not checks:
        raise ValueError("HumanEval test code has no `def check(candidate)`")
    check = checks[0]
    preamble = [n for n in module.body if n is not check]
    steps = [{"code": ast.unparse(n), "counts": False} for n in preamble]
    steps.append({"code": f"{check.args.args[0].arg} = {entry_point}", "counts": False})
    for stmt in check.body:
        has_assert = any(isinstance(n, ast.Assert) for n in ast.walk(stmt))
        steps.append({"code": ast.unparse(stmt), "counts": has_assert})
    return steps


def _assert_steps(asserts: list[str]) -> list[dict]:
    return [{"code": a, "counts": True} for a in asserts]


def _run_asserts(program: str, steps: list[dict], limits: Limits) -> tuple[int, int]:
    nonce = secrets.token_hex(16)
    result = run_files({"main.py": HARNESS, "solution.py": program, "steps.json": json.dumps(steps)},
                       stdin=nonce + "\n", limits=limits)
    marks = {line for line in result.stdout.splitlines() if line.startswith(nonce + " pass ")}
    return len(marks), sum(s["counts"] for s in steps)


def _same_output(got: str, want: str) -> bool:
    """Judges' usual tolerance: trailing spaces on a line and trailing blank lines do not matter."""
    norm = lambda s: [line.rstrip() for line in s.rstrip().splitlines()]  # noqa: E731
    return norm(got) == norm(want)


def _run_stdio(program: str, cases: list[dict], limits: Limits) -> tuple[int, int]:
    pool = _shared_pool()
    futures = [pool.submit(program, str(c["input"]), limits) for c in cases]
    results = [f.result() for f in futures]
    passed = sum(r.ok and _same_output(r.stdout, str(c["output"])) for r, c in zip(results, cases))
    return passed, len(cases)


def count_passed(program: str, row: dict, limits: Limits | None = None) -> tuple[int, int]:
    """(passed, total) for `program` against the row's tests."""
    limits = limits or Limits(timeout=float(_field(row, "timeout_s") or 5.0))
    if _field(row, "test") and _field(row, "entry_point"):
        entry_point = _field(row, "entry_point")
        header = _field(row, "prompt")
        if header and not _defines(program, entry_point):
            program = header + program  # a HumanEval-style completion of the function body
        return _run_asserts(program, humaneval_steps(_field(row, "test"), entry_point), limits)
    if _field(row, "test_list"):
        return _run_asserts(program, _assert_steps(list(_field(row, "test_list"))), limits)
    if _field(row, "tests"):
        return _run_stdio(program, list(_field(row, "tests")), limits)
    raise ValueError(f"row {row.get('id', '?')}: no tests (expected `test`+`entry_point`, `test_list` or `tests`)")


def _defines(program: str, name: str) -> bool:
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == name
               for n in tree.body)


def score_program(program: str | None, row: dict, all_or_nothing: bool = False) -> float:
    if not program or not program.strip():
        return 0.0
    passed, total = count_passed(program, row)
    if total == 0:
        raise ValueError(f"row {row.get('id', '?')}: its tests contain no assertion")
    return float(passed == total) if all_or_nothing else passed / total


@register_reward("code")
def code_fraction(completion: str, **row) -> float:
    """Fraction of the row's tests passed by the reply's last code block."""
    return score_program(extract_code(completion), row)


@register_reward("code_all")
def code_all(completion: str, **row) -> float:
    """1 if the reply's last code block passes every test of the row, else 0."""
    return score_program(extract_code(completion), row, all_or_nothing=True)


@register_verifier("code")
def code_verifier(predicted: str | None, row: dict) -> float:
    return score_program(extract_code(predicted) or predicted if predicted else None, row)


@register_verifier("code_all")
def code_all_verifier(predicted: str | None, row: dict) -> float:
    return score_program(extract_code(predicted) or predicted if predicted else None, row, all_or_nothing=True)
