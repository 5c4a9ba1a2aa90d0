"""The native forward against transformers for every family in rollout/families.py, on tiny random
configs that exercise what makes each family different (fp32: token for token, log-probs within 1e-4)."""
import pytest
import torch

from r1lab.models import tiny_model
from r1lab.rollout import decode_kernel, forward
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.engine import MIN_SHARED_PREFIX, NativeEngine, common_prefix_len
from r1lab.rollout.families import FAMILIES, UnsupportedModelError, family_plan
from r1lab.rollout.hf import HFEngine

GREEDY = SamplingParams(max_new_tokens=24, temperature=0.0)
WINDOW = 8  # shorter than every prompt + completion below, so sliding layers must drop old keys
TEXTS = ["Hello there, how are", "Hi", "The quick brown fox jumps", "a+b="]
SHARED = ["You are a calculator. Q: 1+2=", "You are a calculator. Q: 10+20=", "You are a calculator. Q: 10+20=",
          "You are a calculator. Q: 7*8= A:"]
UNTIED = dict(tie_word_embeddings=False)
CASES = {
    "llama-llama3-rope-untied": ("llama", dict(UNTIED, rope_parameters={
        "rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
    "qwen2-sliding-untied": ("qwen2", dict(UNTIED, use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1)),
    "mistral-sliding": ("mistral", dict(sliding_window=WINDOW)),
    "qwen3": ("qwen3", {}),
    "qwen3-sliding-untied": ("qwen3", dict(UNTIED, use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1)),
    "gemma3": ("gemma3_text", {}),  # one sliding (window 8) and one full layer, a theta each
    "gemma3-untied-softcap": ("gemma3_text", dict(UNTIED, final_logit_softcapping=3.0)),
    "phi3-partial-rotary": ("phi3", {}),
    "phi3-sliding-untied": ("phi3", dict(UNTIED, sliding_window=WINDOW)),
    "olmo2-untied": ("olmo2", UNTIED),
    "smollm3-nope": ("smollm3", {}),
    "smollm3-nope-sliding-untied": ("smollm3", dict(UNTIED, use_sliding_window=True, sliding_window=WINDOW)),
}


def varied(family, tokenizer, **overrides):
    """Random weights where the family's differences show: norms away from 1 (or 0 for Gemma's 1 + w),
    nonzero biases. A larger init than the fixtures, so greedy text varies between prompts."""
    model = tiny_model(family, vocab_size=len(tokenizer), initializer_range=0.2, **overrides)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


def encode(tokenizer, texts):
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def assert_same(ours, theirs):
    assert len({tuple(c.token_ids[:8]) for c in ours}) > 1, "outputs should differ between prompts"
    for a, b in zip(ours, theirs):
        assert a.token_ids == b.token_ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


@pytest.mark.parametrize("prepack", [False, True], ids=["shared", "prepacked"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_greedy_matches_transformers_token_for_token(case, prepack, tokenizer):
    family, overrides = CASES[case]
    model = varied(family, tokenizer, **overrides)
    prompts = encode(tokenizer, TEXTS)
    ours = NativeEngine(model, tokenizer, prepack=prepack).generate(prompts, GREEDY)
    assert_same(ours, HFEngine(model, tokenizer).generate(prompts, GREEDY))


needs_fused = pytest.mark.skipif(decode_kernel.fused_ops() is None or decode_kernel.decode_attention() is None,
                                 reason="the decode kernels did not build here")


@needs_fused
@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_decode_ops_match_transformers_in_fp32(case, tokenizer):
    """The fused elementwise path (rollout/csrc/decode_fused.cpp: every norm placement and kind, q/k norms per
    head and over the projection, partial rotary, NoPE layers, GELU) computes what each family's modules do:
    in fp32 only summation order differs, so greedy tokens agree and log-probs stay within 1e-4."""
    family, overrides = CASES[case]
    model = varied(family, tokenizer, **overrides)
    prompts = encode(tokenizer, TEXTS)
    engine = NativeEngine(model, tokenizer, prepack=True, fused=True)
    assert engine.forward.fused is not None
    assert_same(engine.generate(prompts, GREEDY), HFEngine(model, tokenizer).generate(prompts, GREEDY))


@needs_fused
@pytest.mark.parametrize("row_limit", [None, 4], ids=["rows", "past-the-row-limit"])
@pytest.mark.parametrize("case", ["gemma3", "qwen3-sliding-untied", "smollm3-nope-sliding-untied", "phi3-partial-rotary"])
def test_fused_prefill_of_shared_prefixes_and_repeated_prompts_matches_transformers(case, row_limit, tokenizer,
                                                                                     monkeypatch):
    """The fused path's prefill (prompt tokens as decode rows through the attention kernel): a shared prefix
    computed once, a prompt two slots get computed once and copied, sliding windows and NoPE layers; and past
    ROW_PREFILL_MAX_POSITIONS the SDPA prefill under the fused decode."""
    if row_limit is not None:
        monkeypatch.setattr(forward, "ROW_PREFILL_MAX_POSITIONS", row_limit)
    family, overrides = CASES[case]
    model = varied(family, tokenizer, **overrides)
    prompts = encode(tokenizer, SHARED)
    assert prompts[1] == prompts[2] and common_prefix_len(prompts) >= MIN_SHARED_PREFIX
    engine = NativeEngine(model, tokenizer, prepack=True, fused=True)
    assert_same(engine.generate(prompts, GREEDY), HFEngine(model, tokenizer).generate(prompts, GREEDY))
    alone = NativeEngine(model, tokenizer, prepack=True, fused=True).generate(prompts[3:], GREEDY)
    assert alone[0].token_ids == engine.generate(prompts, GREEDY)[3].token_ids  # no prefix sharing: same tokens


@pytest.mark.parametrize("case", ["gemma3", "qwen3-sliding-untied", "mistral-sliding", "phi3-sliding-untied"])
def test_shared_prefix_longer_than_the_window_matches_transformers(case, tokenizer):
    family, overrides = CASES[case]
    model = varied(family, tokenizer, **overrides)
    prompts = encode(tokenizer, SHARED)
    assert common_prefix_len(prompts) - 1 >= max(MIN_SHARED_PREFIX, WINDOW)  # the prefix alone outgrows the window
    ours = NativeEngine(model, tokenizer).generate(prompts, GREEDY)
    assert_same(ours, HFEngine(model, tokenizer).generate(prompts, GREEDY))


def test_plans_state_each_family_difference(tokenizer):
    gemma = family_plan(tiny_model("gemma3_text").config)
    assert [layer.window for layer in gemma.layers] == [WINDOW, None]
    assert [layer.rope for layer in gemma.layers] == ["sliding_attention", "full_attention"]
    assert gemma.attn_scale == 24 ** -0.5 and gemma.embed_scale == 64 ** 0.5
    assert [layer.rope for layer in family_plan(tiny_model("smollm3").config).layers] == ["default", None]
    assert family_plan(tiny_model("qwen3").config).head_dim == 24
    assert set(FAMILIES) >= {"llama", "qwen2", "mistral", "qwen3", "gemma3_text", "phi3", "olmo2", "smollm3"}


def test_longrope_stays_below_the_original_length():
    config = tiny_model("phi3").config
    config.rope_parameters = {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
                              "short_factor": [1.0] * 4, "long_factor": [2.0] * 4,
                              "original_max_position_embeddings": 512}
    assert family_plan(config).max_positions == 512  # past it HF would switch to the long factors


def test_attention_softcapping_is_refused():
    config = tiny_model("gemma3_text").config
    config.attn_logit_softcapping = 50.0
    with pytest.raises(UnsupportedModelError, match="attn_logit_softcapping"):
        family_plan(config)


def test_auto_engine_falls_back_to_transformers_with_one_notice(tokenizer, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    from r1lab.rollout import factory

    factory._NOTICED.discard("gpt2")
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2))
    engines = [factory.make_engine("auto", gpt2, tokenizer, max_batch_size=4) for _ in range(2)]
    assert all(isinstance(e, HFEngine) and e.max_batch_size == 4 for e in engines)
    notice = capsys.readouterr().err
    assert notice.count("\n") == 1 and "'gpt2'" in notice and "transformers generate" in notice
    assert isinstance(factory.make_engine("auto", tiny_model("qwen3", vocab_size=len(tokenizer)), tokenizer), NativeEngine)
    with pytest.raises(UnsupportedModelError, match="model_type.*'gpt2'"):
        factory.make_engine("native", gpt2, tokenizer)  # asked for explicitly: still an error
