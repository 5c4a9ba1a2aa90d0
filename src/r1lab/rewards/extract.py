"""Pull the final answer out of a reply: <answer> tags, the last \\boxed{}, GSM8K '####', a python block, a last number."""
from __future__ import annotations

import re

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)```", re.DOTALL)
_BARE_BOXED = re.compile(r"[ \t]+([^\s{}$]+)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), nested braces included."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    command = "\\boxed" if text.startswith("\\boxed", start) else "\\fbox"
    bare = _BARE_BOXED.match(text, start + len(command))
    if bare:  # "\boxed 5": TeX takes the next token as the argument
        return bare.group(1)
    i = text.find("{", start)
    if i < 0:
        return None
    if text[start:i].strip() not in ("\\boxed", "\\fbox"):
        return None
    end = closing_brace(text, i)
    return None if end is None else text[i + 1 : end]


def closing_brace(text: str, i: int) -> int | None:
    """Index of the brace closing the one at text[i], nested braces included; None if it never closes."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return None


def tagged_answer(text: str) -> str | None:
    found = _ANSWER.findall(text)
    return found[-1].strip() if found else None


def last_number(text: str) -> str | None:
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "") if found else None


def extract_answer(text: str, fallback_last_number: bool = False, include_code: bool = True) -> str | None:
    """The reply's final answer, or None. Inside <answer> a \\boxed{} wins over the raw text.

    With `include_code`, a reply with no marked answer but a ```python block answers with its program.
    """
    tagged = tagged_answer(text)
    if tagged is not None:
        return last_boxed(tagged) or tagged
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().split("\n")[0].strip()
    program = last_python_block(text) if include_code else None
    if program is not None:  # a code task's answer is its program
        return program
    return last_number(text) if fallback_last_number else None


def _last_block(text: str, languages: tuple[str, ...]) -> str | None:
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in languages]
    return blocks[-1] if blocks else None


def last_python_block(text: str) -> str | None:
    """Body of the last closed ```python (or ```py) fence; an unclosed, truncated fence does not count."""
    return _last_block(text, ("python", "py", "python3"))


def extract_code(text: str) -> str | None:
    """The program in a reply: the last closed ``` fence (python or untagged), else the <answer> content."""
    program = _last_block(text, ("", "python", "py", "python3"))
    return program if program is not None else tagged_answer(text)
