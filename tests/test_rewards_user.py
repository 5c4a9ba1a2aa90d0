"""Rewards from the user's own files and modules: both contracts, async, None, and every failure mode."""
import math
import sys
import textwrap

import pytest

from r1lab.rewards import RewardError, load_reward, load_rewards, metric_name, reward_metrics, score_batch

USER_REWARDS = '''
import asyncio

def brevity(completion, **row):
    return 1.0 / len(completion)

def batched_len(completions, **columns):
    return [float(len(c)) + (1.0 if a == "x" else 0.0) for c, a in zip(completions, columns["answer"])]

def only_even(completions, completion_tokens, **columns):
    return [None if n % 2 else float(n) for n in completion_tokens]

async def slow_async(completion, **row):
    await asyncio.sleep(0.01)
    return 2.0

async def async_batched(completions, **columns):
    await asyncio.sleep(0.01)
    return [3.0] * len(completions)

def sees_columns(completion, **row):
    return float(row["difficulty"]) + row["completion_tokens"] + (10.0 if row["prompt"] == "q1" else 0.0)

def raises(completion, **row):
    raise RuntimeError("boom")

def nan(completion, **row):
    return float("nan")

def text(completion, **row):
    return "high"

def short_list(completions, **columns):
    return [1.0]
'''


@pytest.fixture(scope="module")
def reward_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user")
    path = folder / "my_rewards.py"
    path.write_text(USER_REWARDS)
    return path


def ref(path, fn):
    return f"{path}:{fn}"


ROWS = [{"id": "a", "question": "q1", "answer": "x", "metadata": {"difficulty": 2}},
        {"id": "b", "question": "q2", "answer": "y", "metadata": {"difficulty": 5}}]


def test_per_sample_reward_from_a_file(reward_file):
    batch = score_batch(["ab", "abcd"], ROWS, {ref(reward_file, "brevity"): 2.0})
    assert batch.per_reward[ref(reward_file, "brevity")] == [0.5, 0.25]
    assert batch.total == [1.0, 0.5]


def test_file_path_relative_to_the_recipe_folder_then_the_working_directory(reward_file, monkeypatch, tmp_path):
    assert load_reward("my_rewards.py:brevity", base_dir=reward_file.parent).fn("abcd") == 0.25
    monkeypatch.chdir(reward_file.parent)
    assert load_reward("my_rewards.py:brevity").fn("ab") == 0.5


def test_reward_from_a_module_path(reward_file, monkeypatch):
    monkeypatch.syspath_prepend(str(reward_file.parent))
    sys.modules.pop("my_rewards", None)
    reward = load_reward("my_rewards:batched_len")
    assert reward.batched and not reward.is_async and reward.name == "my_rewards.batched_len"
    assert score_batch(["ab", "c"], ROWS, {"my_rewards:batched_len": 1.0}).total == [3.0, 1.0]


def test_batched_contract_gets_columns_and_none_means_not_applicable(reward_file):
    key = ref(reward_file, "only_even")
    batch = score_batch(["a", "b"], ROWS, {key: 1.0, "format_partial": 1.0}, completion_ids=[[1, 2], [1, 2, 3]])
    assert batch.per_reward[key] == [2.0, None]
    assert batch.total == [2.0, 0.0]  # None adds nothing
    assert batch.failures[key] == 0
    metrics = reward_metrics(batch.per_reward, batch.failures)
    assert metrics[f"reward/{metric_name(key)}"] == 2.0 and metrics[f"reward/{metric_name(key)}_std"] == 0.0


def test_row_holds_dataset_columns_prompt_and_token_count(reward_file):
    batch = score_batch(["a", "b"], ROWS, {ref(reward_file, "sees_columns"): 1.0}, completion_ids=[[7], [7, 8, 9]])
    assert batch.total == [2 + 1 + 10, 5 + 3]


def test_async_rewards_both_contracts(reward_file):
    single, batched = load_reward(ref(reward_file, "slow_async")), load_reward(ref(reward_file, "async_batched"))
    assert single.is_async and not single.batched and batched.is_async and batched.batched
    batch = score_batch(["a", "b"], ROWS, {single.key: 1.0, batched.key: 1.0})
    assert batch.total == [5.0, 5.0]


@pytest.mark.parametrize("fn, problem", [
    ("raises", "raised RuntimeError: boom"), ("nan", "returned nan"),
    ("text", "returned str 'high', expected a number or None"), ("short_list", "returned 1 values for 2 completions"),
])
def test_each_failure_is_an_error_naming_reward_and_sample(reward_file, fn, problem):
    key = ref(reward_file, fn)
    with pytest.raises(RewardError, match=rf"reward '.*{fn}' failed on sample 0 \(row id 'a'\): {problem}"):
        score_batch(["a", "b"], ROWS, {key: 1.0})


@pytest.mark.parametrize("fn", ["raises", "nan", "text", "short_list"])
def test_zero_and_skip_policies_count_every_failure(reward_file, fn):
    key = ref(reward_file, fn)
    zero = score_batch(["a", "b"], ROWS, {key: 1.0, "format_partial": 1.0}, on_error="zero")
    assert zero.per_reward[key] == [0.0, 0.0] and zero.failures[key] == 2
    skip = score_batch(["a", "b"], ROWS, {key: 1.0}, on_error="skip")
    assert skip.per_reward[key] == [None, None] and skip.failures[key] == 2
    metrics = reward_metrics(skip.per_reward, skip.failures)
    assert metrics[f"reward/{metric_name(key)}_failures"] == 2.0


def test_metric_names_are_safe_for_tensorboard_and_file_names():
    assert metric_name("accuracy") == "accuracy"
    assert metric_name("examples/countdown/countdown.py:format_reward") == "countdown.format_reward"
    assert metric_name("pkg.sub.mod:fn") == "mod.fn"
    assert metric_name("weird name!") == "weird_name_"


def test_reward_std_is_the_population_std_over_applicable_samples():
    metrics = reward_metrics({"r": [1.0, 3.0, None]}, {"r": 0})
    assert metrics["reward/r"] == 2.0 and metrics["reward/r_std"] == 1.0 and metrics["reward/r_failures"] == 0.0


@pytest.mark.parametrize("key, message", [
    ("no_such_module_xyz:fn", r"rewards\.no_such_module_xyz:fn: .*cannot import module 'no_such_module_xyz'"),
    ("missing_file.py:fn", r"file missing_file\.py not found"),
    ("no_such_reward", r"unknown reward 'no_such_reward'; registered: .*accuracy"),
])
def test_unresolvable_references_are_one_line_errors(key, message):
    with pytest.raises(ValueError, match=message):
        load_rewards({key: 1.0})


def test_file_without_that_function_lists_what_it_defines(reward_file):
    with pytest.raises(ValueError, match=r"has no function 'nope'; it defines: .*batched_len, brevity"):
        load_rewards({ref(reward_file, "nope"): 1.0})


def test_two_rewards_that_would_log_under_one_name_are_refused(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "r.py").write_text("def fn(completion, **row):\n    return 1.0\n")
    with pytest.raises(ValueError, match=r"would both log as reward/r\.fn"):
        load_rewards({f"{tmp_path}/a/r.py:fn": 1.0, f"{tmp_path}/b/r.py:fn": 1.0})


def test_length_rewards_receive_the_real_token_count():
    # overlong_penalty: free up to 1024 - 256 = 768 tokens, then linear to -1 at 1024
    estimated = score_batch(["x"], [{}], {"overlong_penalty": 1.0})  # 1 byte -> ~1 token
    counted = score_batch(["x"], [{}], {"overlong_penalty": 1.0}, completion_ids=[list(range(896))])
    assert estimated.total == [0.0]
    assert counted.total == [(768 - 896) / 256]
