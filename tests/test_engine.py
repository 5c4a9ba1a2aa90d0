"""NativeEngine against the transformers reference, on tiny random Llama / Qwen2 models in fp32."""
import pytest
import torch

from r1lab.models import tiny_model
from r1lab.rollout import decode_kernel
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.engine import MIN_SHARED_PREFIX, NativeEngine, common_prefix_len
from r1lab.rollout.finish import finish_completion
from r1lab.rollout.forward import DecoderForward
from r1lab.rollout.hf import HFEngine
from r1lab.rollout.linear import DenseLinear, Int8Linear, PackedLinear, SplitLinear
from r1lab.rollout.families import UnsupportedModelError
from r1lab.rollout.sampling import filter_top_k, filter_top_p, sample_rows
from r1lab.rollout.scheduler import Row

TEXTS = ["Hello there, how are", "Hi", "The quick brown fox jumps", "a+b="]  # ragged on purpose
GREEDY = SamplingParams(max_new_tokens=24, temperature=0.0)
SAMPLED = SamplingParams(max_new_tokens=24, temperature=1.0)  # tiny random models repeat one char when greedy


def varied_model(family, tokenizer):
    """Larger init than the fixtures: greedy text varies instead of repeating one char, so
    token-for-token agreement is a real test."""
    return tiny_model(family, vocab_size=len(tokenizer), initializer_range=0.2)


def encode(tokenizer, texts=TEXTS):
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


@pytest.mark.parametrize("prepack", [False, True])
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_greedy_matches_transformers_generate_token_for_token(family, prepack, tokenizer):
    model = varied_model(family, tokenizer)
    if family == "qwen2":  # random init leaves q/k/v biases at zero; make them matter
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.q_proj.bias.normal_(0, 0.5)
                layer.self_attn.k_proj.bias.normal_(0, 0.5)
    prompts = encode(tokenizer)
    engine = NativeEngine(model, tokenizer, prepack=prepack)  # prepack: a oneDNN-blocked fp32 copy, same numbers
    assert engine.forward.prepack == prepack
    assert (engine.forward.weights().layers[0].qkv.sizes is not None) == prepack  # a copy: q/k/v fused
    ours = engine.generate(prompts, GREEDY)
    theirs = HFEngine(model, tokenizer).generate(prompts, GREEDY)
    assert len({c.token_ids[5] for c in ours}) > 1, "outputs should differ between prompts"
    for a, b in zip(ours, theirs):
        assert a.token_ids == b.token_ids
        assert a.text == b.text and a.finish_reason == b.finish_reason
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


SHARED = ["You are a calculator. Q: 1+2=", "You are a calculator. Q: 10+20=", "You are a calculator. Q: 10+20=",
          "You are a calculator.", "You are a calculator. Q: 7*8= A:"]  # one is a prefix of all, one repeats


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_shared_prefix_prefill_matches_transformers(family, tokenizer):
    model = varied_model(family, tokenizer)
    prompts = encode(tokenizer, SHARED)
    assert common_prefix_len(prompts) - 1 >= MIN_SHARED_PREFIX  # the shared-prefix path runs
    ours = NativeEngine(model, tokenizer).generate(prompts, GREEDY)
    theirs = HFEngine(model, tokenizer).generate(prompts, GREEDY)
    assert [c.token_ids for c in ours] == [c.token_ids for c in theirs]
    for a, b in zip(ours, theirs):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_sampled_logprobs_match_a_plain_forward(model, tokenizer):
    params = SamplingParams(max_new_tokens=16, temperature=0.7, top_k=20, top_p=0.9)
    prompts = encode(tokenizer) + encode(tokenizer, SHARED)
    completions = NativeEngine(model, tokenizer).generate(prompts, params, seeds=list(range(len(prompts))))
    for prompt, c in zip(prompts, completions):
        ids = torch.tensor([prompt + c.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt) - 1 : -1]  # (T, V): the position before each new token
        # The full distribution at temperature T, before top-k/top-p filtering.
        expected = torch.log_softmax(logits / 0.7, dim=-1).gather(-1, torch.tensor(c.token_ids)[:, None])
        assert c.logprobs == pytest.approx(expected.squeeze(-1).tolist(), abs=1e-4)


def test_stop_string_cuts_text_and_ends_the_row(model, tokenizer):
    prompts = encode(tokenizer, ["Hello there, how are"])
    engine = NativeEngine(model, tokenizer)
    full = engine.generate(prompts, SAMPLED, seeds=[0])[0]
    # char-level tokenizer: any 2-char substring of the text is a 2-token span; take the first one
    # (from position 4 on) that does not occur earlier, so we know exactly where the cut belongs.
    at = next(i for i in range(4, len(full.text) - 2) if full.text.find(full.text[i : i + 2]) == i)
    stop = full.text[at : at + 2]
    cut = engine.generate(prompts, SamplingParams(max_new_tokens=24, temperature=1.0, stop=[stop]), seeds=[0])[0]
    assert cut.text == full.text[:at]
    assert cut.finish_reason == "stop"
    # finish.py keeps the shortest token prefix whose text reaches into the stop string
    assert cut.token_ids == full.token_ids[: at + 1] and len(cut.logprobs) == at + 1
    kept = engine.generate(prompts, SamplingParams(max_new_tokens=24, temperature=1.0, stop=[stop], include_stop=True),
                           seeds=[0])[0]
    # include_stop: the text ends with the stop string, the tokens with the last one it needs
    assert kept.text == full.text[: at + 2] and kept.finish_reason == "stop"
    assert kept.token_ids == full.token_ids[: at + 2] and len(kept.logprobs) == at + 2


def test_eos_ends_only_its_row(model, tokenizer):
    prompts = encode(tokenizer, ["Hello there, how are", "Hi"])
    engine = NativeEngine(model, tokenizer)
    free = engine.generate(prompts, SAMPLED, seeds=[0, 1])
    eos = next(t for t in free[0].token_ids[3:] if t not in free[1].token_ids)  # ends row 0 only
    engine.eos_ids = {eos}
    ended, running = engine.generate(prompts, SAMPLED, seeds=[0, 1])
    at = free[0].token_ids.index(eos)
    assert at >= 3
    assert ended.token_ids == free[0].token_ids[: at + 1]  # EOS included, as in Completion's contract
    assert ended.finish_reason == "stop" and len(ended.logprobs) == at + 1
    assert running.token_ids == free[1].token_ids and running.finish_reason == "length"


def test_max_new_tokens_and_length_finish(model, tokenizer):
    engine = NativeEngine(model, tokenizer)
    for n in (1, 5):
        for c in engine.generate(encode(tokenizer), SamplingParams(max_new_tokens=n, temperature=1.0), seeds=[0] * 4):
            assert len(c.token_ids) == n == len(c.logprobs)
            assert c.finish_reason == "length" and c.truncated


def test_row_alone_or_in_a_batch_samples_the_same_tokens(model, tokenizer):
    params = SamplingParams(max_new_tokens=20, temperature=1.0, top_p=0.95)
    prompts = encode(tokenizer)
    engine = NativeEngine(model, tokenizer)
    batch = engine.generate(prompts, params, seeds=[11, 12, 13, 14])
    alone = engine.generate([prompts[2]], params, seeds=[13])[0]
    assert alone.token_ids == batch[2].token_ids
    assert alone.logprobs == pytest.approx(batch[2].logprobs, abs=1e-5)
    same_prompt = engine.generate([prompts[0]] * 2, params, seeds=[1, 2])
    assert same_prompt[0].token_ids != same_prompt[1].token_ids, "different seeds must sample differently"


def test_continuous_batching_gives_the_same_completions(model, tokenizer):
    params = SamplingParams(max_new_tokens=12, temperature=1.0, stop=["e"])  # rows end at different steps
    prompts = encode(tokenizer) * 2
    seeds = list(range(len(prompts)))
    wide = NativeEngine(model, tokenizer, max_batch_size=16).generate(prompts, params, seeds)
    narrow = NativeEngine(model, tokenizer, max_batch_size=3).generate(prompts, params, seeds)
    assert [c.token_ids for c in narrow] == [c.token_ids for c in wide]
    assert len({len(c.token_ids) for c in wide}) > 1, "rows should finish at different steps"


def test_engine_sees_in_place_weight_updates(model, tokenizer):
    prompts = encode(tokenizer)
    engine = NativeEngine(model, tokenizer)
    before = engine.generate(prompts, GREEDY)
    with torch.no_grad():  # what an optimizer step does: mutate the same tensors
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    after = engine.generate(prompts, GREEDY)
    reference = HFEngine(model, tokenizer).generate(prompts, GREEDY)
    assert [c.token_ids for c in after] == [c.token_ids for c in reference]
    assert [c.token_ids for c in after] != [c.token_ids for c in before]


@pytest.mark.parametrize("options", [{"dtype": torch.bfloat16}, {"prepack": True}], ids=["bf16", "prepacked-fp32"])
def test_a_weight_copy_needs_refresh(model, tokenizer, options):
    prompts = encode(tokenizer)
    engine = NativeEngine(model, tokenizer, **options)
    assert engine.forward.copies_weights
    before = engine.generate(prompts, GREEDY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    assert [c.token_ids for c in engine.generate(prompts, GREEDY)] == [c.token_ids for c in before]
    engine.refresh_weights()
    assert [c.token_ids for c in engine.generate(prompts, GREEDY)] != [c.token_ids for c in before]


def plain_logprobs(model, prompt, tokens, temperature=1.0) -> torch.Tensor:
    """Log-probs of `tokens` after `prompt` under a plain fp32 forward of the HF model."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1 : -1]  # (T, V)
    return torch.log_softmax(logits.float() / temperature, dim=-1).gather(-1, torch.tensor(tokens)[:, None]).squeeze(-1)


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel-bf16-cache", "bmm-fp32-cache"])
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_bf16_compute_stays_close_to_the_fp32_model(family, tokenizer, kernel):
    """bf16 weights (q/k/v and gate/up fused into one matmul each) with a bf16 KV cache read by the decode
    kernel, or an fp32 one read by torch.bmm: the sampled tokens' log-probs track the fp32 model's. A wrong
    fusion order, a dropped bias or a broken cache would put them far off (the control below shows how far)."""
    model = varied_model(family, tokenizer)
    if family == "qwen2":
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.q_proj.bias.normal_(0, 0.5)
                layer.self_attn.v_proj.bias.normal_(0, 0.5)
    engine = NativeEngine(model, tokenizer, dtype="bfloat16")
    if not kernel:
        engine.forward = DecoderForward(model, dtype="bfloat16", attention_kernel=False)
    built = engine.forward.attention_kernel is not None
    assert engine.forward.dtype == torch.bfloat16 and built == (kernel and decode_kernel.decode_attention() is not None)
    assert engine.forward.cache_dtype == (torch.bfloat16 if built else torch.float32)
    assert engine.forward.weights().layers[0].qkv.fused is not None
    prompts = encode(tokenizer) + encode(tokenizer, SHARED)
    params = SamplingParams(max_new_tokens=16, temperature=1.0, logprobs=True)
    # two calls: SHARED alone takes the shared-prefix prefill path (context read back from the cache)
    completions = (engine.generate(prompts[:len(TEXTS)], params, seeds=list(range(len(TEXTS))))
                   + engine.generate(prompts[len(TEXTS):], params, seeds=list(range(len(SHARED)))))
    errors = torch.cat([torch.tensor(c.logprobs) - plain_logprobs(model, p, c.token_ids)
                        for p, c in zip(prompts, completions)]).abs()
    assert errors.mean() < 0.05 and errors.max() < 0.5
    with torch.no_grad():  # control: the same comparison against a perturbed model is far off
        other = varied_model(family, tokenizer)
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    control = torch.cat([torch.tensor(c.logprobs) - plain_logprobs(other, p, c.token_ids)
                         for p, c in zip(prompts, completions)]).abs()
    assert control.mean() > 5 * errors.mean()


def test_split_linear_fused_equals_separate_matmuls():
    parts = [DenseLinear(torch.randn(6, 4), torch.randn(6)), DenseLinear(torch.randn(3, 4), None),
             DenseLinear(torch.randn(5, 4), torch.randn(5))]
    x = torch.randn(2, 7, 4)
    weight, bias = SplitLinear.concatenate([(p.weight, p.bias) for p in parts])
    fused = SplitLinear.fused(DenseLinear(weight, bias), [6, 3, 5])(x)
    separate = SplitLinear(parts)(x)
    packed = SplitLinear.fused(PackedLinear(weight, bias), [6, 3, 5])(x)  # oneDNN-blocked copy
    for a, b in zip(packed, separate):
        torch.testing.assert_close(a, b)
    assert [t.shape for t in fused] == [(2, 7, 6), (2, 7, 3), (2, 7, 5)]
    for a, b in zip(fused, separate):
        torch.testing.assert_close(a, b)


def test_int8_fused_projections_equal_separate_int8_matmuls():
    """Per-row weight scales and one activation quantization per call: fusing q/k/v (or gate/up) in int8
    changes nothing but the number of calls."""
    torch.manual_seed(0)
    pairs = [(torch.randn(48, 32), torch.randn(48)), (torch.randn(16, 32), None), (torch.randn(16, 32), torch.randn(16))]
    x = torch.randn(3, 32)
    fused = SplitLinear.fused(Int8Linear(*SplitLinear.concatenate(pairs)), [48, 16, 16])(x)
    separate = SplitLinear([Int8Linear(w, b) for w, b in pairs])(x)
    for a, b in zip(fused, separate):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_auto_dtype_follows_the_measured_bf16_speed(model, tokenizer, monkeypatch):
    import r1lab.precision as precision

    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 4.0)  # an AVX-512 BF16 / AMX CPU
    assert NativeEngine(model, tokenizer, dtype="auto").forward.dtype == torch.bfloat16
    assert precision.use_bf16_autocast("auto") is True
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 0.02)  # AVX2 only: bf16 is emulated
    engine = NativeEngine(model, tokenizer, dtype="auto")
    assert engine.forward.dtype == torch.float32 and not engine.forward.copies_weights
    assert precision.use_bf16_autocast("auto") is False
    assert NativeEngine(model, tokenizer, dtype="auto", quantize="int8").forward.quantize == "int8"
    assert precision.resolve_dtype("model", torch.float32) == torch.float32
    assert precision.resolve_dtype("float16", torch.float32) == torch.float16
    with pytest.raises(ValueError, match="dtype must be one of auto"):
        NativeEngine(model, tokenizer, dtype="fp8")
    with pytest.raises(ValueError, match="prepack=True needs dense weights"):
        NativeEngine(model, tokenizer, quantize="int8", prepack=True)
    with pytest.raises(ValueError, match="bf16_autocast must be true, false or auto"):
        precision.use_bf16_autocast("yes")


def test_bf16_autocast_auto_is_a_valid_config_value():
    from r1lab.config import from_dict
    from r1lab.rl.config import ZeroConfig

    assert from_dict(ZeroConfig, {"grpo": {"bf16_autocast": "auto"}}).grpo.bf16_autocast == "auto"
    with pytest.raises(Exception, match="bf16_autocast"):
        from_dict(ZeroConfig, {"grpo": {"bf16_autocast": "sometimes"}})


def test_int8_stays_close_to_fp32_and_needs_refresh(model, tokenizer):
    prompts = encode(tokenizer)
    params = SamplingParams(max_new_tokens=12, temperature=1.0)
    exact = NativeEngine(model, tokenizer).generate(prompts, params, seeds=[0, 1, 2, 3])
    int8 = NativeEngine(model, tokenizer, quantize="int8")
    assert int8.forward.weights().layers[0].qkv.sizes is not None  # q/k/v in one int8 matmul
    approx = int8.generate(prompts, params, seeds=[0, 1, 2, 3])
    first = [(a.token_ids[0], b.token_ids[0]) for a, b in zip(exact, approx)]
    assert all(a == b for a, b in first)  # same seed, nearly the same distribution: same first token
    assert approx[0].logprobs[0] == pytest.approx(exact[0].logprobs[0], abs=0.05)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    stale = int8.generate(prompts, params, seeds=[0, 1, 2, 3])
    assert [c.token_ids for c in stale] == [c.token_ids for c in approx]
    int8.refresh_weights()
    assert [c.token_ids for c in int8.generate(prompts, params, seeds=[0, 1, 2, 3])] != [c.token_ids for c in approx]


def test_lora_adapters_are_applied(model, tokenizer):
    peft = pytest.importorskip("peft")
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # LoRA B starts at zero; give the adapters an effect
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    prompts = encode(tokenizer)
    ours = NativeEngine(wrapped, tokenizer).generate(prompts, GREEDY)
    theirs = HFEngine(wrapped, tokenizer).generate(prompts, GREEDY)
    assert [c.token_ids for c in ours] == [c.token_ids for c in theirs]
    with wrapped.disable_adapter():
        base = HFEngine(wrapped, tokenizer).generate(prompts, GREEDY)
    assert [c.token_ids for c in ours] != [c.token_ids for c in base]


def test_unsupported_architecture_is_a_clear_error(tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2))
    with pytest.raises(UnsupportedModelError, match="model_type"):
        NativeEngine(gpt2, tokenizer)


def test_top_k_keeps_ties_and_top_p_keeps_the_smallest_nucleus():
    scores = torch.tensor([[3.0, 1.0, 3.0, 2.0]])
    assert torch.isinf(filter_top_k(scores, 1)).tolist() == [[False, True, False, True]]
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
    kept = lambda p: (~torch.isinf(filter_top_p(probs.log(), p))).tolist()[0]  # noqa: E731
    assert kept(0.75) == [True, False, True, False]  # drops 0.05 and 0.15 (mass 0.2 <= 0.25)
    assert kept(0.9) == [True, False, True, True]


def test_inverse_cdf_sampling_follows_the_probabilities():
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3]])
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat([sample_rows(probs, [generator]) for _ in range(4000)])
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert freq[1] == 0
    assert freq.tolist() == pytest.approx([0.1, 0.0, 0.6, 0.3], abs=0.03)


def test_top_k_one_sampling_is_greedy(model, tokenizer):
    engine = NativeEngine(model, tokenizer)
    sampled = engine.generate(encode(tokenizer), SamplingParams(max_new_tokens=16, temperature=1.3, top_k=1), seeds=[5] * 4)
    greedy = engine.generate(encode(tokenizer), SamplingParams(max_new_tokens=16, temperature=0.0))
    assert [c.token_ids for c in sampled] == [c.token_ids for c in greedy]


# ---------------------------------------------------------------- the step API (sessions)
def alone(engine, prompt, params, seed):
    return engine.generate([prompt], params, seeds=[seed])[0]


@pytest.mark.parametrize("first, joiner", [(1, 0), (0, 2)])  # the joiner is longer / shorter
def test_a_row_admitted_mid_generation_samples_what_it_would_alone(tokenizer, first, joiner):
    engine = NativeEngine(varied_model("llama", tokenizer), tokenizer)
    engine.eos_ids = set()  # every row runs to max_new_tokens: the step counts below are exact
    prompts = encode(tokenizer)
    early_params = SamplingParams(max_new_tokens=12, temperature=1.0)
    late_params = SamplingParams(max_new_tokens=20, temperature=1.0, top_p=0.9)  # needs a longer cache
    session = engine.session()  # no sizes given: the cache grows as rows join
    early = Row(prompts[first], early_params, seed=3)
    session.add(early)
    for _ in range(4):
        session.step()
    late = Row(prompts[joiner], late_params, seed=4)
    session.add(late)
    session.step()  # prefills the newcomer only
    assert (len(early.tokens), len(late.tokens)) == (4, 1)
    session.step()  # then both decode together
    assert (len(early.tokens), len(late.tokens)) == (5, 2)
    session.run()
    assert early.tokens == alone(engine, prompts[first], early_params, 3).token_ids
    assert late.tokens == alone(engine, prompts[joiner], late_params, 4).token_ids
    assert len(set(late.tokens)) > 3  # a varied sequence, so a cache mix-up would show
    assert (early.finish_reason, late.finish_reason) == ("length", "length")


def test_cancelling_a_row_stops_it_and_frees_its_slot_for_a_waiting_row(model, tokenizer):
    engine = NativeEngine(model, tokenizer)
    engine.eos_ids = set()
    params = SamplingParams(max_new_tokens=10, temperature=1.0)
    prompts = encode(tokenizer)
    finishes = []
    rows = [Row(p, params, seed=i, on_finish=lambda reason, i=i: finishes.append((i, reason)))
            for i, p in enumerate(prompts)]
    session = engine.session(num_slots=2)
    for row in rows:
        session.add(row)
    rows[3].cancel()  # cancelled while waiting: never computed
    for _ in range(3):
        session.step()
    assert session.scheduler.running == rows[:2] and [len(r.tokens) for r in rows] == [3, 3, 0, 0]
    rows[0].cancel()  # between steps, as a server does when a client leaves
    assert session.step() == [rows[0]]  # it leaves before any compute, row 2 takes its slot
    assert session.scheduler.running == [rows[1], rows[2]] and len(rows[2].tokens) == 1
    session.run()
    assert len(rows[0].tokens) == 3 and rows[0].finish_reason == "cancelled"
    assert rows[3].tokens == [] and rows[3].finish_reason == "cancelled"
    assert sorted(finishes) == [(0, "cancelled"), (1, "length"), (2, "length"), (3, "cancelled")]
    for i in (1, 2):  # the survivor moved slots and the newcomer reused one: neither noticed
        assert rows[i].tokens == alone(engine, prompts[i], params, i).token_ids


def test_rows_with_different_params_share_one_batch(model, tokenizer):
    engine = NativeEngine(model, tokenizer)
    prompts = encode(tokenizer)
    full = alone(engine, prompts[0], SAMPLED, 0)
    at = next(i for i in range(4, len(full.text) - 2) if full.text.find(full.text[i : i + 2]) == i)
    mixed = [
        (SamplingParams(max_new_tokens=24, temperature=1.0, stop=[full.text[at : at + 2]]), 0),
        (SamplingParams(max_new_tokens=6, temperature=0.0), 1),
        (SamplingParams(max_new_tokens=15, temperature=0.7, top_k=20, top_p=0.9, logprobs=False), 2),
        (SamplingParams(max_new_tokens=9, temperature=1.3, top_k=5), 3),
    ]
    streamed = [[] for _ in mixed]
    rows = [Row(p, params, seed, on_token=streamed[i].append)
            for i, (p, (params, seed)) in enumerate(zip(prompts, mixed))]
    session = engine.session()
    for row in rows:
        session.add(row)
    session.run()
    for i, (row, (params, seed)) in enumerate(zip(rows, mixed)):
        expected = alone(engine, prompts[i], params, seed)
        ours = finish_completion(row.prompt, row.tokens, row.logprobs if params.logprobs else None, tokenizer,
                                 engine.eos_ids, params)
        assert ours.token_ids == expected.token_ids and ours.finish_reason == expected.finish_reason
        assert (ours.logprobs is None) == (expected.logprobs is None)
        if expected.logprobs is not None:
            assert ours.logprobs == pytest.approx(expected.logprobs, abs=1e-5)
        assert streamed[i] == row.tokens  # the callback saw every token, in order
    assert rows[0].finish_reason == "stop" and rows[0].tokens[: at + 1] == full.token_ids[: at + 1]
    assert [len(r.tokens) for r in rows[1:]] == [6, 15, 9]
