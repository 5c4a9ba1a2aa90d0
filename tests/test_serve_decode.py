import pytest
import torch

from r1lab.models import tiny_model
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.hf import HFEngine
from r1lab.serve.decode import HFDecoder, Row

PROMPTS = ["2+2=", "a much longer prompt, so the batch is padded", "xy"]


@pytest.fixture(params=["llama", "qwen2"])
def lively_model(request, tokenizer):
    """Larger random weights: greedy decoding varies token to token instead of repeating one token."""
    return tiny_model(request.param, vocab_size=len(tokenizer), initializer_range=0.2)


def make_rows(tokenizer, prompts, max_new_tokens=10, temperature=0.0, seed=0):
    rows = []
    for i, text in enumerate(prompts):
        out: dict = {"tokens": [], "finish": None}
        generator = torch.Generator().manual_seed(seed + i)
        rows.append(Row(tokenizer(text, add_special_tokens=False)["input_ids"],
                        SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, logprobs=False),
                        generator, on_token=out["tokens"].append, on_finish=lambda r, out=out: out.update(finish=r)))
        rows[-1].out = out
    return rows


def never_admit(_free):
    return []


def test_greedy_batched_decode_matches_transformers_generate(lively_model, tokenizer):
    model = lively_model
    rows = make_rows(tokenizer, PROMPTS)
    HFDecoder(model, tokenizer).run(rows, never_admit)
    reference = HFEngine(model, tokenizer).generate([r.prompt_ids for r in rows],
                                                    SamplingParams(max_new_tokens=10, temperature=0, logprobs=False))
    for row, ref in zip(rows, reference):
        expected = [t for t in ref.token_ids if t != tokenizer.eos_token_id]
        assert row.out["tokens"] == expected
        assert row.out["finish"] == ("length" if ref.finish_reason == "length" else "eos")


@pytest.mark.parametrize("running, joining", [(0, 1), (1, 0)])  # the joiner is longer / shorter
def test_rows_that_join_a_running_batch_decode_as_if_alone(lively_model, tokenizer, running, joining):
    model = lively_model
    alone = make_rows(tokenizer, [PROMPTS[joining]], max_new_tokens=12)
    HFDecoder(model, tokenizer).run(alone, never_admit)
    first = make_rows(tokenizer, [PROMPTS[running]], max_new_tokens=12)
    late = make_rows(tokenizer, [PROMPTS[joining]], max_new_tokens=12)
    calls = []

    def admit_after_three_steps(free):
        calls.append(free)
        return late if len(calls) == 3 else []

    HFDecoder(model, tokenizer, max_rows=4).run(first, admit_after_three_steps)
    assert calls[:3] == [3, 3, 3]  # free capacity = max_rows - running rows
    assert late[0].out["tokens"] == alone[0].out["tokens"]
    assert len(set(alone[0].out["tokens"])) > 3  # a varied sequence, so a cache mix-up would show
    assert len(first[0].out["tokens"]) == 12


def test_a_seeded_row_samples_the_same_tokens_whatever_shares_its_batch(model, tokenizer):
    solo = make_rows(tokenizer, PROMPTS[:1], max_new_tokens=16, temperature=1.0, seed=7)
    HFDecoder(model, tokenizer).run(solo, never_admit)
    crowd = make_rows(tokenizer, PROMPTS, max_new_tokens=16, temperature=1.0, seed=7)
    HFDecoder(model, tokenizer).run(crowd, never_admit)
    assert crowd[0].out["tokens"] == solo[0].out["tokens"]
    other_seed = make_rows(tokenizer, PROMPTS[:1], max_new_tokens=16, temperature=1.0, seed=8)
    HFDecoder(model, tokenizer).run(other_seed, never_admit)
    assert other_seed[0].out["tokens"] != solo[0].out["tokens"]


def test_a_cancelled_row_stops_at_the_next_step_and_the_others_go_on(model, tokenizer):
    rows = make_rows(tokenizer, PROMPTS[:2], max_new_tokens=10)
    rows[0].on_token = lambda token, row=rows[0]: (row.out["tokens"].append(token),
                                                   len(row.out["tokens"]) == 3 and row.cancel())
    HFDecoder(model, tokenizer).run(rows, never_admit)
    assert (len(rows[0].out["tokens"]), rows[0].out["finish"]) == (3, "cancelled")
    assert (len(rows[1].out["tokens"]), rows[1].out["finish"]) == (10, "length")
