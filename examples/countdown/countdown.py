"""Countdown (TinyZero's task) as your own task, verifier and reward, in one file r1lab never imports itself.

The recipe beside this file names what it needs here:
    task:    {source: countdown.py:countdown_rows}
    rewards: {accuracy: 1.0, countdown.py:format_reward: 0.5}
`accuracy` (built in) extracts the answer and calls each row's verifier: `reaches_target` below.
"""
import ast
import operator
import random
import re

OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _value(node):
    """The value of an arithmetic expression tree, and the numbers it uses; anything else is refused."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value, [node.value]
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        (left, used_left), (right, used_right) = _value(node.left), _value(node.right)
        return OPERATORS[type(node.op)](left, right), used_left + used_right
    raise ValueError("only integers, + - * / and parentheses")


def reaches_target(predicted, row):
    """Verifier: 1.0 if the expression uses each given number exactly once and equals the target."""
    if not predicted:
        return 0.0
    try:
        value, used = _value(ast.parse(predicted.strip().split("=")[0], mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return 0.0
    numbers = row["metadata"]["numbers"]
    return float(sorted(used) == sorted(numbers) and abs(value - row["metadata"]["target"]) < 1e-9)


def countdown_rows(n=400, count=3, largest=9, seed=0):
    """Rows of the task: numbers, a reachable target, and the verifier above (by function)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        numbers = [rng.randint(1, largest) for _ in range(count)]
        a, b, c = numbers  # a target some expression reaches: (a op b) op c
        target = eval(f"({a} {rng.choice('+-*')} {b}) {rng.choice('+-*')} {c}")  # noqa: S307 (our own digits)
        question = (f"Using the numbers {numbers}, each exactly once, with + - * / and parentheses, "
                    f"write an expression equal to {target}.")
        rows.append({"question": question, "answer": str(target), "numbers": numbers, "target": target,
                     "verifier": reaches_target})
    return rows


_ANSWER = re.compile(r"<answer>\s*([0-9+\-*/() ]+)\s*</answer>", re.DOTALL)


def format_reward(completion, **row):
    """Your own reward: 1.0 for <answer>EXPRESSION</answer> with only digits and operators, 0.5 for any answer tags."""
    if _ANSWER.search(completion):
        return 1.0
    return 0.5 if "<answer>" in completion and "</answer>" in completion else 0.0
