"""The fused decode ops (rollout/csrc/decode_fused.cpp) against the torch ops they replace (forward.py)."""
import pytest
import torch

from r1lab.rollout import decode_kernel
from r1lab.rollout.forward import apply_rope, gated, rms_norm

ops = decode_kernel.fused_ops()
pytestmark = pytest.mark.skipif(ops is None, reason="the fused decode ops did not build here")
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2}  # bf16: the unfused ops round after every op


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["llama", "fp32"])
@pytest.mark.parametrize("with_branch", [False, True])
def test_add_rms_norm_is_the_residual_add_then_the_family_norm(dtype, kind, with_branch):
    torch.manual_seed(0)
    x, branch = torch.randn(5, 37, dtype=dtype), torch.randn(5, 37, dtype=dtype)
    weight = torch.randn(37) * 0.5 + 1  # "fp32" kind: fp32 weights (OLMo 2, Gemma); llama: the compute dtype
    weight = weight if kind == "fp32" else weight.to(dtype)
    summed = x + branch if with_branch else x.clone()
    want = rms_norm(summed, weight, 1e-6, kind)
    got_x = x.clone()
    got = ops.add_rms_norm(got_x, branch if with_branch else None, weight, 1e-6, kind == "llama")
    assert got.dtype == dtype and torch.equal(got_x, summed)  # the add happens in place, rounded as torch does
    assert torch.allclose(got.float(), want.float(), atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype,cache_dtype", [(torch.float32, torch.float32), (torch.float32, torch.bfloat16),
                                               (torch.bfloat16, torch.bfloat16)])
@pytest.mark.parametrize("rotary", [8, 4])  # full, and partial (Phi-3/4): the last dims pass through
def test_rope_into_cache_rotates_q_and_k_and_writes_k_v_at_each_rows_position(dtype, cache_dtype, rotary):
    torch.manual_seed(0)
    B, H, Hkv, D, L = 3, 4, 2, 8, 12
    qkv = torch.randn(B, (H + 2 * Hkv) * D, dtype=dtype)
    q, k, v = qkv.split([H * D, Hkv * D, Hkv * D], dim=-1)  # strided views, as the fused projection gives them
    angles = torch.arange(L)[:, None] * torch.rand(rotary // 2)[None]
    cos, sin = torch.cat([angles.cos()] * 2, -1).to(dtype), torch.cat([angles.sin()] * 2, -1).to(dtype)
    positions = torch.tensor([0, 7, 3])
    cache_k, cache_v = torch.zeros(4, Hkv, L, D, dtype=cache_dtype), torch.zeros(4, Hkv, L, D, dtype=cache_dtype)

    got_q = ops.rope_into_cache(q, k, v, cos, sin, positions, cache_k, cache_v)

    c, s = cos[positions][:, None].float(), sin[positions][:, None].float()
    want_q = apply_rope(q.float().unflatten(-1, (H, D)), c, s)
    want_k = apply_rope(k.float().unflatten(-1, (Hkv, D)), c, s)
    tol = TOLERANCE[torch.bfloat16 if torch.bfloat16 in (dtype, cache_dtype) else torch.float32]
    assert got_q.dtype == torch.float32 and torch.allclose(got_q, want_q, atol=tol)
    rows = torch.arange(B)
    assert torch.allclose(cache_k[rows, :, positions].float(), want_k, atol=tol)
    assert torch.equal(cache_v[rows, :, positions], v.unflatten(-1, (Hkv, D)).to(cache_dtype))
    written = torch.zeros(4, Hkv, L, dtype=torch.bool)
    written[rows, :, positions] = True
    assert not cache_k[~written].any() and not cache_v[~written].any()  # nothing else touched, slot 3 included


def test_rope_into_cache_writes_each_row_into_its_given_slot():
    """A prefill's tokens are rows of one slot each (slots=): row b lands in slot slots[b] at positions[b]."""
    torch.manual_seed(0)
    B, H, Hkv, D, L = 4, 2, 1, 8, 6
    q, k, v = torch.randn(B, H * D), torch.randn(B, Hkv * D), torch.randn(B, Hkv * D)
    cos, sin = torch.ones(L, D), torch.zeros(L, D)  # no rotation: what lands where is the question
    positions, slots = torch.tensor([0, 1, 2, 0]), torch.tensor([2, 2, 2, 0])
    cache_k, cache_v = torch.zeros(3, Hkv, L, D), torch.zeros(3, Hkv, L, D)
    ops.rope_into_cache(q, k, v, cos, sin, positions, cache_k, cache_v, slots)
    assert torch.equal(cache_k[slots, :, positions], k.unflatten(-1, (Hkv, D)))
    assert torch.equal(cache_v[slots, :, positions], v.unflatten(-1, (Hkv, D)))
    assert not cache_k[1].any()  # slot 1 got no row
    with pytest.raises(RuntimeError, match="slot outside the cache"):
        ops.rope_into_cache(q, k, v, cos, sin, positions, cache_k, cache_v, torch.tensor([0, 1, 2, 3]))


def test_rope_into_cache_refuses_a_position_outside_the_cache():
    q, k = torch.zeros(1, 8), torch.zeros(1, 8)
    cache = torch.zeros(1, 1, 4, 8)
    with pytest.raises(RuntimeError, match="position outside the cache"):
        ops.rope_into_cache(q, k, k.clone(), torch.ones(4, 8), torch.zeros(4, 8), torch.tensor([4]), cache, cache.clone())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_silu_mul_is_silu_of_the_gate_half_times_the_up_half(dtype):
    torch.manual_seed(0)
    gate_up = torch.randn(6, 2 * 33, dtype=dtype) * 3
    want = gated("silu", *gate_up.float().split(33, dim=-1))
    assert torch.allclose(ops.silu_mul(gate_up).float(), want, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


def test_the_fused_ops_turn_off_with_the_kernel(monkeypatch):
    monkeypatch.setenv("R1LAB_DECODE_KERNEL", "0")
    assert decode_kernel.fused_ops.__wrapped__() is None
