"""The two ways the native engine applies a Linear layer: dense (shared or cast weights) or int8.

Int8 (fbgemm dynamic quantization: int8 weights per output channel, activations quantized per
call) runs 2-4x faster than fp32 on AVX2 CPUs without bf16 units, but it samples from a slightly
different model (a few % relative error per matmul): an explicit opt-in for rollouts only.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F


class DenseLinear:
    """y = x W^T + b on the given tensors (the model's own when no cast was needed)."""

    __slots__ = ("weight", "bias")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight, self.bias = weight, bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class Int8Linear:
    """A quantized copy of (weight, bias); it does not follow later changes to the model."""

    __slots__ = ("packed",)

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        if "fbgemm" not in torch.backends.quantized.supported_engines:
            raise RuntimeError("int8 rollouts need torch's fbgemm quantized engine (x86 builds have it)")
        w = weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12).double()  # (N,) symmetric per output row
        zero = torch.zeros(w.shape[0], dtype=torch.long)
        with warnings.catch_warnings():
            # torch 2.13 marks quantized tensor types deprecated (pytorch#184982); they still work, and
            # this is the only int8 GEMM in stock torch. The engine's tests catch their removal.
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            q = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
        self.packed = torch.ops.quantized.linear_prepack(q, None if bias is None else bias.detach().float())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # reduce_range: 7-bit activations, so AVX2's int16 pair sums cannot saturate.
        return torch.ops.quantized.linear_dynamic(x, self.packed, True)
