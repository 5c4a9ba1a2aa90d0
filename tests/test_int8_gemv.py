"""The one-row AVX-512 VNNI int8 matmul (rollout/csrc/int8_gemv.cpp) and how Int8Linear uses it."""
import pytest
import torch

from r1lab.rollout import decode_kernel
from r1lab.rollout.linear import Int8Linear

kernel = decode_kernel.int8_gemv()
pytestmark = pytest.mark.skipif(kernel is None, reason="no AVX-512 VNNI here, or the kernel did not build")


def integer_reference(x, q, w_scale, bias):
    """What the kernel computes, in float64: x quantized symmetric to 8 bits, integer dot products, both scales."""
    x_scale = x.abs().max() / 127
    xq = torch.round(x / x_scale).clamp(-127, 127)
    y = (xq.double() @ q.double().T) * x_scale.double() * w_scale.double()
    return (y + bias.double() if bias is not None else y).float()


@pytest.mark.parametrize("n,k", [(16, 16), (19, 30), (130, 77), (576, 1536), (1000, 576)])  # tails in N and K
@pytest.mark.parametrize("with_bias", [False, True])
def test_gemv_is_the_integer_product_of_the_quantized_row_and_weight(n, k, with_bias):
    torch.manual_seed(n + k)
    q = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    w_scale, x = torch.rand(n) * 1e-3, torch.randn(1, k)
    bias = torch.randn(n) if with_bias else None
    got = kernel.gemv(x, kernel.pack(q), w_scale, q.sum(dim=1, dtype=torch.int32), bias)
    want = integer_reference(x, q, w_scale, bias)
    assert got.shape == (1, n)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_int8_linear_runs_one_row_on_the_kernel_and_batches_on_fbgemm():
    torch.manual_seed(0)
    weight, bias = torch.randn(300, 96) * 0.05, torch.randn(300)
    linear = Int8Linear(weight, bias)
    rows = torch.randn(4, 96)
    exact = rows @ weight.T + bias
    one = torch.cat([linear(row[None]) for row in rows])  # the kernel
    batched = linear(rows)  # fbgemm, 7-bit activations per call
    for got in (one, batched):
        assert (got - exact).norm() / exact.norm() < 0.02
    assert not torch.equal(one, batched)  # two kernels, two quantizations: both int8-close, not bit-equal
    q = linear.one_row[0]
    assert q.dtype == torch.int8  # the kernel reads fbgemm's own int8 weights, repacked
    scale = linear.one_row[1]
    expected = integer_reference(rows[:1], torch.quantize_per_channel(weight, scale.double(), torch.zeros(300, dtype=torch.long), 0,
                                                                        torch.qint8).int_repr(), scale, bias)
    assert torch.allclose(one[:1], expected, rtol=1e-5, atol=1e-4)


def test_the_kernel_turns_off_with_the_others(monkeypatch):
    monkeypatch.setenv("R1LAB_DECODE_KERNEL", "0")
    assert decode_kernel.int8_gemv.__wrapped__() is None
