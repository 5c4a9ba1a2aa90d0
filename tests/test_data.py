"""Tasks and prompts: splits never overlap, each style renders what the paper prescribes."""
import json

import pytest

from r1lab.data import TaskConfig, TaskError, load_task
from r1lab.data.base import Task
from r1lab.data.prompts import R1_MATH_SUFFIX, PromptConfig, full_completion, render


def test_reasoning_gym_splits_never_overlap_even_in_a_tiny_problem_space():
    task = load_task(TaskConfig(kwargs={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
                                train_size=500, test_size=50))
    assert len(task.test) == 50
    assert not {r["question"] for r in task.train} & {r["question"] for r in task.test}
    assert task.train[0]["verifier"] == "reasoning_gym"


def test_jsonl_task_split_is_seeded_and_disjoint(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "answer": str(i)}) + "\n" for i in range(30)))
    a = load_task(TaskConfig(source="jsonl", path=str(path), test_size=5, seed=1))
    b = load_task(TaskConfig(source="jsonl", path=str(path), test_size=5, seed=1))
    assert [r["id"] for r in a.test] == [r["id"] for r in b.test]
    assert len(a.train) == 25 and not {r["question"] for r in a.train} & {r["question"] for r in a.test}


def test_bundled_gsm8k_uses_the_official_test_split():
    task = load_task(TaskConfig(source="gsm8k", train_size=10, test_size=3))
    assert task.test[0]["answer"] == "18" and task.test[0]["verifier"] == "numeric"


def test_task_refuses_overlap():
    row = {"id": "a", "question": "q", "answer": "1", "verifier": "exact", "metadata": {}}
    with pytest.raises(TaskError, match="also appear in train"):
        Task("t", [row], [row])


def test_zero_style_is_the_verbatim_r1_zero_template():
    text = render("What is 2+2", PromptConfig(style="zero", prefill="<think>"))
    assert text.startswith("A conversation between User and Assistant.")
    assert text.endswith("User: What is 2+2. Assistant: <think>")


def test_chat_and_r1_styles(tokenizer):
    chat = render("2+2?", PromptConfig(style="chat"), tokenizer)
    assert "<|im_start|>system" in chat and "<answer>5</answer>" in chat and chat.endswith("assistant\n<think>")
    r1 = render("2+2?", PromptConfig(style="r1", prefill="<think>\n"), tokenizer)
    assert "system" not in r1 and R1_MATH_SUFFIX in r1 and r1.endswith("<think>\n")
    assert full_completion(" 4 </think>", PromptConfig()) == "<think> 4 </think>"
    with pytest.raises(ValueError, match="prompt.style"):
        PromptConfig(style="fancy")
