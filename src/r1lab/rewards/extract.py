"""Pull the final answer out of a reply: <answer> tags, the last \\boxed{}, GSM8K '####', a python block, a last number."""
from __future__ import annotations

import re

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)```", re.DOTALL)
_BARE_BOXED = re.compile(r"[ \t]+([^\s{}$]+)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)")
# What may stand between boxes that answer together: "\boxed{1}, \boxed{2} and \boxed{3}"
_BOX_SEPARATOR = re.compile(r"(?:\s|[,;.&$]|\\[(),;\[\] ]|\\\\|\\q?quad|\band\b|\bor\b|\\text\{\s*(?:and|or)?\s*\})*")


def _box_at(text: str, start: int) -> tuple[str, int] | None:
    """(content, end) of the \\boxed / \\fbox command at text[start], or None if it has no argument."""
    command = "\\boxed" if text.startswith("\\boxed", start) else "\\fbox"
    bare = _BARE_BOXED.match(text, start + len(command))
    if bare:  # "\boxed 5": TeX takes the next token as the argument
        return bare.group(1), bare.end()
    i = text.find("{", start)
    if i < 0 or text[start:i].strip() != command:
        return None
    end = closing_brace(text, i)
    return None if end is None else (text[i + 1 : end], end + 1)


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), nested braces included."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    found = _box_at(text, start) if start >= 0 else None
    return found[0] if found else None


def final_boxes(text: str) -> list[str]:
    """Contents of the last box and of the boxes right before it that answer together with it
    (only separators between them: `\\boxed{1}, \\boxed{2} and \\boxed{3}`); [] if there is no box."""
    boxes = []  # (start, content, end)
    for match in _BOX_COMMAND.finditer(text):
        box = _box_at(text, match.start())
        if box is not None and (not boxes or match.start() >= boxes[-1][2]):  # not a box inside a box
            boxes.append((match.start(), *box))
    first = len(boxes) - 1
    while first > 0 and _BOX_SEPARATOR.fullmatch(text[boxes[first - 1][2] : boxes[first][0]]):
        first -= 1
    return [content for _, content, _ in boxes[first:]]


def boxed_answer(text: str) -> str | None:
    """The final box's content; several boxes answering together are joined: `1, 2, 3`."""
    contents = final_boxes(text)
    return ", ".join(c.strip() for c in contents) if contents else None


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
    """The reply's final answer, or None. Inside <answer> a \\boxed{} wins over the raw text; several
    boxes in a row at the end (`\\boxed{1}, \\boxed{2}`) answer together (`1, 2`).

    With `include_code`, a reply with no marked answer but a ```python block answers with its program.
    """
    tagged = tagged_answer(text)
    if tagged is not None:
        return boxed_answer(tagged) or tagged
    boxed = boxed_answer(text)
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
