"""The C++ decode-attention kernel (rollout/csrc) against a plain masked softmax and against the bmm path."""
import pytest
import torch

from r1lab.rollout import decode_kernel
from r1lab.rollout.forward import DecoderForward
from test_engine_families import CASES, varied

kernel = decode_kernel.decode_attention()
needs_kernel = pytest.mark.skipif(kernel is None, reason="the decode-attention kernel did not build here")


def reference(q, k, v, positions, window, scale):
    """Row b's query heads attend to its own keys at lo..positions[b]; head h reads KV head h // G."""
    B, H, D = q.shape
    G = H // k.shape[1]
    out = torch.empty_like(q)
    for b in range(B):
        last = int(positions[b])
        lo = max(0, last - window + 1) if window else 0
        keys = k[b, :, lo:last + 1].repeat_interleave(G, dim=0)  # (H, n, D)
        values = v[b, :, lo:last + 1].repeat_interleave(G, dim=0)
        weights = (torch.einsum("hd,hnd->hn", q[b].double(), keys.double()) * scale).softmax(-1)
        out[b] = torch.einsum("hn,hnd->hd", weights, values.double()).float()
    return out


@needs_kernel
@pytest.mark.parametrize("heads,kv_heads,head_dim,window", [
    (9, 3, 64, 0),    # SmolLM2's shape
    (4, 1, 256, 5),   # Gemma 3 270M's, sliding
    (20, 2, 40, 0),   # 10 query heads a KV head (past one register block), a head dim with a scalar tail
    (6, 6, 17, 3),    # no grouping, odd head dim, window shorter than some rows
])
def test_kernel_matches_a_masked_softmax(heads, kv_heads, head_dim, window):
    torch.manual_seed(0)
    slots, max_len, B = 7, 40, 5  # more slots than running rows: only the first B are read
    k, v = torch.randn(slots, kv_heads, max_len, head_dim), torch.randn(slots, kv_heads, max_len, head_dim)
    q = torch.randn(B, heads, head_dim)
    positions = torch.tensor([0, 3, 39, 17, 8])
    ours = kernel(q, k, v, positions, window, 0.125)
    assert torch.allclose(ours, reference(q, k, v, positions, window, 0.125), atol=2e-6, rtol=1e-5)


@needs_kernel
def test_bf16_keys_and_values_read_as_their_fp32_values():
    torch.manual_seed(0)
    k, v = torch.randn(4, 3, 30, 64).bfloat16(), torch.randn(4, 3, 30, 64).bfloat16()
    q, positions = torch.randn(3, 9, 64), torch.tensor([29, 0, 11])
    ours = kernel(q, k, v, positions, 0, 0.125)
    assert torch.allclose(ours, reference(q, k.float(), v.float(), positions, 0, 0.125), atol=2e-6, rtol=1e-5)


bf16_dots = pytest.mark.skipif(kernel is None or decode_kernel.bf16_gemm() is None,
                               reason="no AVX-512 BF16 here (bf16_dots falls back to fp32 math)")


@bf16_dots
@pytest.mark.parametrize("heads,kv_heads,head_dim,window", [
    (9, 3, 64, 0),    # SmolLM2
    (4, 1, 256, 5),   # Gemma 3 270M, sliding
    (20, 2, 64, 0),   # 10 query heads a KV head: two register blocks
    (8, 2, 128, 0),   # Qwen3-like
])
def test_bf16_dots_match_a_masked_softmax_to_bf16_rounding(heads, kv_heads, head_dim, window):
    torch.manual_seed(0)
    slots, max_len, B = 7, 60, 5  # rows of 1, 4, 60, 18 and 33 keys: full and partial 16-key tiles, odd counts
    k = torch.randn(slots, kv_heads, max_len, head_dim).bfloat16()
    v = torch.randn(slots, kv_heads, max_len, head_dim).bfloat16()
    q, positions = torch.randn(B, heads, head_dim), torch.tensor([0, 3, 59, 17, 32])
    want = reference(q, k.float(), v.float(), positions, window, 0.125)
    ours = kernel(q, k, v, positions, window, 0.125, True)
    assert (ours - want).abs().max() < 2e-2  # q and the weights rounded to bf16 (2^-8 relative)
    assert (ours - want).abs().max() > 1e-5  # ... and they were: this is not the fp32 path


@needs_kernel
def test_bf16_dots_keep_fp32_math_where_they_do_not_apply():
    torch.manual_seed(0)
    q, positions = torch.randn(2, 4, 17), torch.tensor([5, 9])
    for k in (torch.randn(2, 2, 10, 17), torch.randn(2, 2, 10, 17).bfloat16()):  # fp32 K/V; D not a multiple of 32
        assert torch.equal(kernel(q, k, k, positions, 0, 0.5, True), kernel(q, k, k, positions, 0, 0.5))


@needs_kernel
@pytest.mark.parametrize("dtype,dots", [(torch.float32, False), (torch.bfloat16, False), (torch.bfloat16, True)])
def test_rows_read_the_slots_they_are_given(dtype, dots):
    """A prefill's tokens as rows: several rows of one slot at increasing positions, any slot order."""
    torch.manual_seed(0)
    k, v = torch.randn(4, 2, 20, 64).to(dtype), torch.randn(4, 2, 20, 64).to(dtype)
    q = torch.randn(5, 6, 64)
    positions, slots = torch.tensor([0, 1, 2, 7, 19]), torch.tensor([3, 3, 3, 0, 2])
    ours = kernel(q, k, v, positions, 0, 0.125, dots, slots)
    want = reference(q, k[slots].float(), v[slots].float(), positions, 0, 0.125)
    assert torch.allclose(ours, want, atol=2e-2 if dots else 2e-6, rtol=0 if dots else 1e-5)
    with pytest.raises(RuntimeError, match="slot outside the cache"):
        kernel(q, k, v, positions, 0, 0.125, dots, torch.tensor([0, 1, 2, 3, 4]))


@needs_kernel
def test_a_bf16_engine_keeps_its_cache_in_bf16_only_with_the_kernel(tokenizer):
    family, overrides = CASES["qwen3-sliding-untied"]
    model = varied(family, tokenizer, **overrides)
    assert DecoderForward(model, dtype=torch.bfloat16).new_cache(2, 8).k[0].dtype == torch.bfloat16
    assert DecoderForward(model, dtype=torch.bfloat16, attention_kernel=False).new_cache(2, 8).k[0].dtype == torch.float32
    assert DecoderForward(model, dtype=torch.bfloat16, kv_dtype="float32").new_cache(2, 8).k[0].dtype == torch.float32
    with pytest.raises(ValueError, match="reads fp32 or bf16 K/V"):
        DecoderForward(model, kv_dtype=torch.float16)


@needs_kernel
def test_kernel_refuses_what_it_cannot_read():
    k = torch.zeros(2, 1, 8, 16)
    with pytest.raises(RuntimeError, match="position outside the cache"):
        kernel(torch.zeros(1, 1, 16), k, k, torch.tensor([8]), 0, 1.0)
    with pytest.raises(RuntimeError, match="fp32 q"):
        kernel(torch.zeros(1, 1, 16, dtype=torch.bfloat16), k, k, torch.tensor([0]), 0, 1.0)
    with pytest.raises(RuntimeError, match="both fp32 or both bf16"):
        kernel(torch.zeros(1, 1, 16), k, k.bfloat16(), torch.tensor([0]), 0, 1.0)


@needs_kernel
@pytest.mark.parametrize("case", ["gemma3", "qwen3-sliding-untied", "phi3-partial-rotary", "smollm3-nope-sliding-untied"])
def test_decode_with_the_kernel_equals_the_bmm_path(case, tokenizer):
    family, overrides = CASES[case]
    model = varied(family, tokenizer, **overrides)
    with_kernel = DecoderForward(model, attention_kernel=True)
    with_bmm = DecoderForward(model, attention_kernel=False)
    assert with_kernel.attention_kernel is not None and with_bmm.attention_kernel is None
    torch.manual_seed(0)
    B, max_len = 3, 24
    logits = []
    for fwd in (with_kernel, with_bmm):
        cache, ropes, w = fwd.new_cache(4, max_len), fwd.rope_tables(max_len), fwd.weights()
        torch.manual_seed(1)
        with torch.no_grad():
            for step in range(14):  # rows at different positions, past the sliding window (8)
                positions = torch.tensor([step, step + 5, step // 2])
                out = fwd.decode(w, torch.randint(0, 50, (B,)), positions, cache, ropes)
        logits.append(out)
    assert torch.allclose(logits[0], logits[1], atol=1e-5)


def test_the_kernel_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("R1LAB_DECODE_KERNEL", "0")
    assert decode_kernel.decode_attention.__wrapped__() is None
