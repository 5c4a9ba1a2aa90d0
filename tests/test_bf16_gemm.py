"""The decode-batch bf16 matmul (rollout/csrc/bf16_gemm.cpp) and PackedLinear's use of it."""
import pytest
import torch

from r1lab.rollout import decode_kernel
from r1lab.rollout.linear import PackedLinear, can_prepack

gemm = decode_kernel.bf16_gemm()
needs_gemm = pytest.mark.skipif(gemm is None, reason="no AVX-512 BF16 here, or the kernel did not build")


def reference(x, weight, bias):
    """fp32 sums of the bf16 values, rounded to bf16 once: what the kernel promises up to summation order."""
    out = x.float() @ weight.float().t() + (0 if bias is None else bias.float())
    return out.bfloat16()


@needs_gemm
@pytest.mark.parametrize("rows", [1, 5, 8, 9, 32, 300])  # one row, a partial tile, exact tiles, past one 256-row chunk
@pytest.mark.parametrize("out_features,in_features", [(16, 2), (50, 576), (960, 64), (97, 130)])
def test_kernel_matches_fp32_sums_rounded_to_bf16(rows, out_features, in_features):
    torch.manual_seed(rows * 1000 + out_features)
    weight = torch.randn(out_features, in_features).bfloat16()
    bias = torch.randn(out_features)
    x = torch.randn(rows, in_features).bfloat16()
    ours = gemm.linear(x, gemm.pack(weight), bias, out_features)
    want = reference(x, weight, bias)
    assert ours.shape == (rows, out_features) and ours.dtype == torch.bfloat16
    # one bf16 rounding of the same sum: at most one ulp apart (2^-7 relative), summation order aside
    assert torch.allclose(ours.float(), want.float(), rtol=2 ** -7, atol=1e-3 * in_features ** 0.5)


@needs_gemm
@pytest.mark.parametrize("rows", [1, 8, 32, 300])  # the prefetch's cases: one block of rows, several, two chunks
def test_next_panel_prefetch_leaves_every_output_bit_as_it_was(rows):
    torch.manual_seed(rows)
    weight, x = torch.randn(3072, 576).bfloat16(), torch.randn(rows, 576).bfloat16()  # 64 panels: several a thread
    packed = gemm.pack(weight)
    assert torch.equal(gemm.linear(x, packed, None, 3072), gemm.linear(x, packed, None, 3072, prefetch=False))


@needs_gemm
def test_kernel_keeps_leading_dimensions_and_runs_without_bias():
    torch.manual_seed(0)
    weight, x = torch.randn(40, 64).bfloat16(), torch.randn(3, 7, 64).bfloat16()
    ours = gemm.linear(x, gemm.pack(weight), None, 40)
    assert ours.shape == (3, 7, 40)
    assert torch.allclose(ours.float(), reference(x, weight, None).float(), rtol=2 ** -7, atol=1e-2)


@needs_gemm
def test_kernel_refuses_inputs_that_do_not_match_the_packed_weight():
    packed = gemm.pack(torch.zeros(32, 64).bfloat16())
    with pytest.raises(RuntimeError, match="does not match the packed weight"):
        gemm.linear(torch.zeros(2, 66).bfloat16(), packed, None, 32)
    with pytest.raises(RuntimeError, match="bf16"):
        gemm.linear(torch.zeros(2, 64), packed, None, 32)


@needs_gemm
def test_packed_linear_runs_bf16_on_the_kernel_and_falls_back_to_onednn_for_odd_inputs():
    torch.manual_seed(0)
    weight, bias = torch.randn(48, 64).bfloat16(), torch.randn(48).bfloat16()
    linear = PackedLinear(weight, bias)
    assert linear.kernel is not None
    x = torch.randn(4, 64).bfloat16()
    assert torch.allclose(linear(x).float(), reference(x, weight, bias).float(), rtol=2 ** -7, atol=1e-2)
    if can_prepack(torch.device("cpu"), torch.bfloat16):
        odd = PackedLinear(torch.randn(48, 63).bfloat16(), None)  # K odd: no bf16 pairs, oneDNN's layout
        assert odd.kernel is None and odd(torch.randn(4, 63).bfloat16()).shape == (4, 48)
    assert PackedLinear(torch.randn(8, 8), None).kernel is None  # fp32 stays on oneDNN


def test_the_kernel_turns_off_with_the_switch(monkeypatch):
    monkeypatch.setenv("R1LAB_DECODE_KERNEL", "0")
    assert decode_kernel.bf16_gemm.__wrapped__() is None


def test_cpus_with_amx_keep_onednn(monkeypatch):
    monkeypatch.setattr(decode_kernel, "_cpu_flags", lambda: "flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile")
    assert decode_kernel.bf16_gemm.__wrapped__() is None
