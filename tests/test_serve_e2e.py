"""The real decode path end to end: a tiny random Llama checkpoint served and queried with `openai`."""
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from serve_support import running_server

from r1lab.models import tiny_tokenizer
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.families import UnsupportedModelError
from r1lab.serve.app import build_service
from r1lab.serve.protocol import DEFAULT_TOP_P

ASK = [{"role": "system", "content": "Think first."}, {"role": "user", "content": "2+2?"}]


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    service = build_service(tiny_model_dir, served_model_name="tiny", default_max_tokens=16)
    with running_server(service) as url:
        yield service, openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)


@pytest.fixture
def client(served):
    return served[1]


def reasoning_of(message) -> str:
    return message.model_extra["reasoning_content"]


def test_stream_and_full_response_agree_for_the_same_seed(client):
    args = dict(model="tiny", messages=ASK, max_tokens=12, temperature=1.0, seed=11)
    full = client.chat.completions.create(**args)
    chunks = [c for c in client.chat.completions.create(**args, stream=True) if c.choices]
    streamed = "".join(c.choices[0].delta.model_extra.get("reasoning_content") or "" for c in chunks)
    streamed_content = "".join(c.choices[0].delta.content or "" for c in chunks)
    message = full.choices[0].message
    assert reasoning_of(message) + (message.content or "") == streamed + streamed_content
    assert full.usage.completion_tokens <= 12


def test_seed_makes_sampling_reproducible_and_choices_differ(client):
    args = dict(model="tiny", messages=ASK, max_tokens=12, temperature=1.0, seed=3, n=2)
    first, again = client.chat.completions.create(**args), client.chat.completions.create(**args)
    texts = [reasoning_of(c.message) for c in first.choices]
    assert texts == [reasoning_of(c.message) for c in again.choices]
    assert texts[0] != texts[1]


def test_length_cut_reports_every_token_as_reasoning(client):
    # greedy on this random model never writes "</think>" or EOS in 8 tokens
    response = client.chat.completions.create(model="tiny", messages=ASK, max_tokens=8, temperature=0)
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == response.usage.completion_tokens_details.reasoning_tokens == 8
    assert response.choices[0].message.content is None


def test_default_max_tokens_comes_from_the_server(client):
    response = client.chat.completions.create(model="tiny", messages=ASK, temperature=0)
    assert response.usage.completion_tokens <= 16


def test_requests_sent_together_get_what_each_gets_alone(client):
    """Different sampling params, seeds and n in one batch of the native engine, joining as they arrive."""
    asks = [dict(temperature=1.0, seed=5, max_tokens=10), dict(temperature=0, max_tokens=6),
            dict(temperature=0.8, top_p=0.9, seed=9, n=2, max_tokens=14)]

    def texts(args):
        response = client.chat.completions.create(model="tiny", messages=ASK, **args)
        return [(reasoning_of(c.message), c.finish_reason) for c in response.choices]

    one_by_one = [texts(args) for args in asks]
    with ThreadPoolExecutor(len(asks)) as pool:
        together = list(pool.map(texts, asks))
    assert together == one_by_one
    assert [len(t) for t in together] == [1, 1, 2]


def test_a_model_the_native_engine_cannot_run_is_a_clear_error(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tiny_tokenizer()
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match="r1lab serve decodes on the native rollout engine.*'gpt2'"):
        build_service(str(tmp_path))


def test_logprobs_are_the_engines_own_for_the_same_seed(served):
    service, client = served
    response = client.chat.completions.create(model="tiny", messages=ASK, max_tokens=8, temperature=1.0, seed=9,
                                              logprobs=True)
    served_logprobs = [e.logprob for e in response.choices[0].logprobs.content]
    alone = service.batcher.engine.generate([service.prompt_ids(ASK)], SamplingParams(
        max_new_tokens=8, temperature=1.0, top_p=DEFAULT_TOP_P, logprobs=True), seeds=[9])[0]
    assert len(served_logprobs) == response.usage.completion_tokens == len(alone.token_ids)
    assert served_logprobs == pytest.approx(alone.logprobs, abs=1e-5)
    assert all(lp <= 0 for lp in served_logprobs)
