import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from r1lab.models import tiny_tokenizer
from r1lab.serve.detokenize import IncrementalDetokenizer
from r1lab.serve.reasoning import ReasoningSplitter, StopCutter, split_reasoning

TEXTS = [
    "think a bit</think>\n\nThe answer is 4.",
    "<think>\nself-opened</think>answer",
    "  <think>x</think>y",
    "never closes the think block",
    "a < b and c </thin k> still thinking </th",
    "</think>",
    "nested </think> once </think> twice",
    "<thi",
    "",
    "   ",
]


def stream(pieces: list[str]) -> tuple[str, str | None]:
    splitter = ReasoningSplitter()
    deltas = [d for p in pieces for d in splitter.feed(p)] + splitter.finish()
    reasoning = "".join(t for c, t in deltas if c == "reasoning")
    content = "".join(t for c, t in deltas if c == "content")
    return reasoning, content if splitter.in_content else None


def test_split_puts_text_before_the_close_tag_in_reasoning_and_strips_the_answer():
    assert split_reasoning("let me see</think>\n\nFour.") == ("let me see", "Four.")


def test_split_without_close_tag_is_all_reasoning_and_content_none():
    assert split_reasoning("cut off by max_tokens") == ("cut off by max_tokens", None)


def test_split_drops_a_leading_open_tag_the_model_wrote_itself():
    assert split_reasoning("<think>\nhmm</think>ok") == ("\nhmm", "ok")


def test_split_keeps_later_close_tags_in_the_answer():
    assert split_reasoning("a</think>b</think>c") == ("a", "b</think>c")


@pytest.mark.parametrize("text", TEXTS)
def test_streaming_split_matches_whole_split_for_every_two_piece_cut(text):
    for cut in range(len(text) + 1):
        assert stream([text[:cut], text[cut:]]) == split_reasoning(text), cut


@pytest.mark.parametrize("text", TEXTS)
def test_streaming_split_matches_whole_split_char_by_char(text):
    assert stream(list(text)) == split_reasoning(text)


def test_streaming_split_never_shows_half_a_close_tag():
    splitter = ReasoningSplitter()
    assert splitter.feed("abc</th") == [("reasoning", "abc")]
    assert splitter.feed("ink>") == []
    assert splitter.in_content
    assert splitter.feed(" 42") == [("content", "42")]


def test_streaming_split_releases_a_false_alarm_tag_start():
    splitter = ReasoningSplitter()
    assert splitter.feed("x </t") == [("reasoning", "x ")]
    assert splitter.feed("able") == [("reasoning", "</table")]


def test_stop_cutter_cuts_at_a_stop_split_across_pieces():
    cutter = StopCutter(["STOP"])
    assert cutter.feed("answer: 4 ST") == "answer: 4 "
    assert cutter.feed("OP and more") == ""
    assert cutter.stopped and cutter.finish() == ""


def test_stop_cutter_flushes_a_held_back_prefix_that_never_became_a_stop():
    cutter = StopCutter(["\n\n", "END"])
    assert cutter.feed("4\n") == "4"
    assert cutter.feed("E") == "\n"  # "\nE" cannot start "\n\n"; "E" may still start "END"
    assert cutter.finish() == "E"
    assert not cutter.stopped


def test_stop_cutter_picks_the_earliest_of_several_stops():
    cutter = StopCutter(["b", "a"])
    assert cutter.feed("xxabc") == "xx"


def _byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE whose merges do not cover the accented and CJK characters: they span tokens."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(["the answer is four " * 20], trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=backend)


@pytest.mark.parametrize("make_tokenizer", [tiny_tokenizer, _byte_level_tokenizer])
def test_incremental_detokenizer_deltas_add_up_to_the_full_decode(make_tokenizer):
    tokenizer = make_tokenizer()
    text = "the answer is 四 (café) — four"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    detok = IncrementalDetokenizer(tokenizer)
    deltas = [detok.push(i) for i in ids] + [detok.finish()]
    assert "".join(deltas) == tokenizer.decode(ids, skip_special_tokens=True)
    assert not any("\ufffd" in d for d in deltas)


def test_incremental_detokenizer_waits_for_the_rest_of_a_multibyte_character():
    tokenizer = _byte_level_tokenizer()
    ids = tokenizer("四", add_special_tokens=False)["input_ids"]
    assert len(ids) == 3  # one token per UTF-8 byte
    detok = IncrementalDetokenizer(tokenizer)
    assert [detok.push(i) for i in ids] == ["", "", "四"]
