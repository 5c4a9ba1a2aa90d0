"""Shaping rewards: strict format, tag count, language consistency, cosine length, overlong, repetition."""
import math

import pytest

from r1lab.rewards import get_reward, reward_names, score_batch
from r1lab.rewards.shaping import (language_share, make_cosine_length, make_overlong_penalty,
                                   make_repetition_penalty, think_section)

GOOD = "<think>\nadd them\n</think>\n<answer>5</answer>"


def reward(name, completion, **row):
    return get_reward(name)(completion, **row)


@pytest.mark.parametrize("completion, expected", [
    (GOOD, 1.0),
    ("  <think>a</think><answer>5</answer>\n", 1.0),
    ("<think>a</think>", 0.0),  # no answer
    ("<answer>5</answer>", 0.0),  # no thinking
    ("<answer>5</answer><think>a</think>", 0.0),  # wrong order
    ("<think>a</think><answer>5</answer><answer>6</answer>", 0.0),  # answer twice
    ("<think>a</think><answer>5 <think>b</answer>", 0.0),  # a tag inside the answer
    ("<think>a</think> chatter <answer>5</answer>", 0.0),  # text between the blocks
    ("<think>a</think><answer>5</answer> P.S.", 0.0),  # text after
])
def test_strict_format(completion, expected):
    assert reward("format", completion) == expected


@pytest.mark.parametrize("completion, expected", [
    (GOOD, 1.0),
    ("add them\n</think>\n<answer>5</answer>", 0.75),  # <think> was prefilled
    ("<think> x </think> <think> y </think>", 0.0),  # each think tag twice, no answer
    ("plain reply", 0.0),
])
def test_tag_count(completion, expected):
    assert reward("tag_count", completion) == expected


def test_think_section():
    assert think_section("<think>why</think><answer>1</answer>") == "why"
    assert think_section("prefilled reasoning</think>rest") == "prefilled reasoning"
    assert think_section("no tags at all") == "no tags at all"


def test_language_consistency_latin_vs_cjk():
    english = "<think>First add the two numbers, then check.</think><answer>5</answer>"
    mixed = "<think>First 我们 add 两个数</think><answer>5</answer>"  # 2 Latin words, 5 Han characters
    chinese = "<think>我们先把两个数相加</think><answer>5</answer>"
    assert reward("language_consistency", english) == 1.0
    assert reward("language_consistency", mixed) == pytest.approx(2 / 7)
    assert reward("language_consistency", mixed, language="zh") == pytest.approx(5 / 7)
    assert reward("language_consistency", chinese, language="zh") == 1.0
    assert reward("language_consistency", chinese) == 0.0
    assert reward("language_consistency", "<think>1 + 2 = 3</think>") == 0.0  # no words: nothing to reward


def test_language_share_other_scripts_and_errors():
    assert language_share("Привет мир hello", "ru") == pytest.approx(2 / 3)
    assert language_share("これは テスト", "ja") == 1.0
    with pytest.raises(ValueError, match="not supported"):
        language_share("hi", "xx")


def test_cosine_length_rewards_short_correct_and_long_wrong():
    cosine = make_cosine_length(max_len=100)
    row = {"answer": "5", "verifier": "exact"}
    right, wrong = "<answer>5</answer>", "<answer>6</answer>"
    assert cosine(right, completion_tokens=0, **row) == pytest.approx(1.0)
    assert cosine(right, completion_tokens=100, **row) == pytest.approx(0.5)
    assert cosine(right, completion_tokens=50, **row) == pytest.approx(0.75)
    assert cosine(wrong, completion_tokens=0, **row) == pytest.approx(-1.0)
    assert cosine(wrong, completion_tokens=100, **row) == pytest.approx(-0.5)
    assert cosine(wrong, completion_tokens=500, **row) == pytest.approx(-0.5)  # clamped past max_len
    assert make_cosine_length(max_len=100, exceed=-10)(right, completion_tokens=101, **row) == -10
    short, long = cosine(right, completion_tokens=20, **row), cosine(right, completion_tokens=80, **row)
    assert short > long and 0.5 + 0.25 * (1 + math.cos(math.pi * 0.2)) == pytest.approx(short)


def test_length_estimate_without_token_counts():
    cosine = make_cosine_length(max_len=10)
    row = {"answer": "5", "verifier": "exact"}
    assert cosine("<answer>5</answer>" + " " * 22, **row) == pytest.approx(0.5)  # 40 bytes ≈ 10 tokens


def test_overlong_penalty():
    overlong = make_overlong_penalty(max_len=100, cache_len=20)
    assert overlong("", completion_tokens=80) == 0.0
    assert overlong("", completion_tokens=90) == pytest.approx(-0.5)
    assert overlong("", completion_tokens=100) == pytest.approx(-1.0)
    assert overlong("", completion_tokens=101) == -1.0
    with pytest.raises(ValueError):
        make_overlong_penalty(max_len=10, cache_len=20)


def test_repetition_penalty():
    penalty = make_repetition_penalty(ngram_size=2, max_penalty=-1.0)
    assert penalty("the cat sat on a mat") == 0.0
    assert penalty("wait wait wait wait wait") == pytest.approx(-0.75)  # 4 bigrams, 1 unique
    assert penalty("hi") == 0.0  # shorter than one n-gram
    assert penalty("等等等等") == pytest.approx(-2 / 3)  # CJK characters are tokens
    assert reward("repetition_penalty", "Wait, wait. " * 20) < -0.8
    assert reward("repetition_penalty", GOOD) == 0.0


def test_every_shaping_reward_is_registered_and_combines_by_weight():
    names = {"format", "format_partial", "tag_count", "language_consistency", "cosine_length",
             "overlong_penalty", "repetition_penalty"}
    assert names <= set(reward_names())
    rows = [{"answer": "5", "verifier": "exact"}]
    batch = score_batch([GOOD], rows, {"format": 1.0, "tag_count": 0.5, "repetition_penalty": 2.0})
    assert batch.total == [1.5] and batch.failures == {"format": 0, "tag_count": 0, "repetition_penalty": 0}
