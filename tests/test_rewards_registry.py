"""Registry and batch scoring: rewards by name, weights, and failures that stop the batch or (by policy) score 0."""
import threading
import time

import pytest

from r1lab.rewards import RewardError, get_reward, register_reward, score_batch
from r1lab.rewards.extract import extract_answer, last_boxed, last_number, tagged_answer

_release = threading.Event()


@register_reward("test_registry_length")
def _length(completion: str, **row) -> float:
    return float(len(completion))


@register_reward("test_registry_raises")
def _raises(completion: str, **row) -> float:
    raise RuntimeError("broken reward")


@register_reward("test_registry_hangs")
def _hangs(completion: str, **row) -> float:
    _release.wait(30)
    return 1.0


def test_weights_combine_rewards_by_name():
    batch = score_batch(["ab", "abcd"], [{}, {}], {"test_registry_length": 0.5, "format_partial": 1.0})
    assert batch.total == [1.0, 2.0] and batch.per_reward["test_registry_length"] == [2.0, 4.0]


def test_a_raising_reward_stops_the_batch_naming_reward_and_sample():
    with pytest.raises(RewardError, match=r"reward 'test_registry_raises' failed on sample 0 \(row id 'r0'\): "
                                          r"raised RuntimeError: broken reward"):
        score_batch(["a"], [{"id": "r0"}], {"test_registry_raises": 1.0})


def test_a_raising_reward_scores_zero_and_is_counted_under_the_zero_policy():
    batch = score_batch(["a", "b"], [{}, {}], {"test_registry_raises": 1.0, "test_registry_length": 1.0},
                        on_error="zero")
    assert batch.total == [1.0, 1.0] and batch.failures == {"test_registry_raises": 2, "test_registry_length": 0}


def test_a_hanging_reward_times_out_without_blocking_the_batch():
    start = time.monotonic()
    try:
        batch = score_batch(["a"], [{}], {"test_registry_hangs": 1.0}, timeout=0.3, on_error="zero")
    finally:
        _release.set()
    assert batch.total == [0.0] and batch.failures == {"test_registry_hangs": 1}
    assert time.monotonic() - start < 5


def test_unknown_reward_names_the_registered_ones():
    with pytest.raises(KeyError, match="registered: .*accuracy"):
        get_reward("no_such_reward")


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="2 completions but 1 rows"):
        score_batch(["a", "b"], [{}], {"format": 1.0})


def test_extraction_helpers():
    assert last_boxed(r"\boxed{1} then \boxed{\frac{a}{b}}") == r"\frac{a}{b}"
    assert last_boxed(r"\boxed{unclosed") is None
    assert tagged_answer("<answer> 1 </answer><answer> 2 </answer>") == "2"
    assert last_number("cost 1,200 then 3.5") == "3.5"
    assert extract_answer(r"<answer>so \boxed{7}</answer>") == "7"
    assert extract_answer("text #### 42\nmore") == "42"
    assert extract_answer("it is 12") is None and extract_answer("it is 12", fallback_last_number=True) == "12"
    assert last_boxed(r"so \boxed 12 is it") == "12" and last_boxed(r"\boxed {3}") == "3"


def test_python_block_is_the_answer_of_a_code_reply_but_not_of_a_math_one():
    reply = "I checked it with\n```python\nprint(2 + 2)\n```\nso the total is 4"
    assert extract_answer(reply) == "print(2 + 2)\n"
    assert extract_answer(reply, fallback_last_number=True, include_code=False) == "4"
