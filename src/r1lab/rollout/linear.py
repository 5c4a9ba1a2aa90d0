"""The ways the native engine applies a Linear layer: dense (the model's own tensors), prepacked
(a oneDNN-blocked copy), or int8.

A plain bf16/fp32 matmul on CPU re-packs the weight into oneDNN's blocked layout on every call;
at decode batch sizes that costs as much as the multiply (measured: 30 layers of SmolLM2's
linears 19.3 ms plain vs 12.4 ms prepacked in bf16, LM head 5.1 vs 2.7 ms; identical results).
So whenever the engine keeps a copy of the weights anyway, it keeps them prepacked.

Int8 (fbgemm dynamic quantization: int8 weights per output channel, activations quantized per
call) runs 2-4x faster than fp32 on AVX2 CPUs without bf16 units, but it samples from a slightly
different model (a few % relative error per matmul): an explicit opt-in for rollouts only. A single row
(batch-1 decoding) runs on r1lab's AVX-512 VNNI kernel where it builds (csrc/int8_gemv.cpp: the same int8
weights, x quantized to 8 bits per row; fbgemm's per-call cost is most of a small matmul there), which keeps
a second int8 copy of the weights in its layout.
"""
from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F

from r1lab.rollout import decode_kernel


class DenseLinear:
    """y = x W^T + b on the given tensors (the model's own when no cast was needed)."""

    __slots__ = ("weight", "bias")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight, self.bias = weight, bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def can_prepack(device: torch.device, dtype: torch.dtype = torch.float32) -> bool:
    """oneDNN prepacking (torch's own CPU inference path) exists in this build and applies to `device`
    and `dtype` (oneDNN packs bf16 only on CPUs with AVX-512 BF16 or AVX-NE-CONVERT)."""
    ops = torch.ops.mkldnn
    if not (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and hasattr(ops, "_reorder_linear_weight") and hasattr(ops, "_linear_pointwise")):
        return False
    return _packs(dtype)


@functools.cache
def _packs(dtype: torch.dtype) -> bool:
    try:  # the CPU feature checks live inside oneDNN: ask it once per dtype
        torch.ops.mkldnn._reorder_linear_weight(torch.zeros((8, 8), dtype=dtype), 1)
        return True
    except RuntimeError:
        return False


class PackedLinear:
    """A copy of (weight, bias) in a matmul kernel's own layout; it does not follow later changes to the model.

    bf16 runs on r1lab's AVX-512 BF16 kernel where it builds (csrc/bf16_gemm.cpp: at decode batch sizes oneDNN
    reaches about half of the bf16 peak, the kernel 85-100 %; at prefill sizes the two are within a few %, so one
    copy serves both); everything else on oneDNN's blocked layout.
    """

    __slots__ = ("packed", "bias", "out_features", "kernel")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, batch_hint: int = 32):
        weight = weight.detach().contiguous()
        self.out_features = weight.shape[0]
        self.kernel = decode_kernel.bf16_gemm() if weight.dtype == torch.bfloat16 and weight.shape[1] % 2 == 0 else None
        if self.kernel is not None:
            self.packed = self.kernel.pack(weight)
            self.bias = None if bias is None else bias.detach().float().contiguous()
        else:
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, batch_hint)
            self.bias = None if bias is None else bias.detach().contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel is not None:
            return self.kernel.linear(x, self.packed, self.bias, self.out_features)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


class Int8Linear:
    """A quantized copy of (weight, bias); it does not follow later changes to the model."""

    __slots__ = ("packed", "gemv", "one_row")

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
        self.gemv = decode_kernel.int8_gemv()
        if self.gemv is not None:  # the same int8 weights again, in the one-row kernel's layout
            q_rows = q.int_repr()
            self.one_row = (self.gemv.pack(q_rows), scale.float(), q_rows.sum(dim=1, dtype=torch.int32),
                            None if bias is None else bias.detach().float().contiguous())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.gemv is not None and x.dim() == 2 and x.shape[0] == 1:
            return self.gemv.gemv(x, *self.one_row)
        # reduce_range: 7-bit activations, so AVX2's int16 pair sums cannot saturate.
        return torch.ops.quantized.linear_dynamic(x, self.packed, True)


class SplitLinear:
    """Several Linears reading the same input (q/k/v, gate/up), returned as a tuple.

    With a copy of the weights, one concatenated matmul does them all: fewer, larger GEMMs run
    faster at decode-sized batches (measured 10% per layer in bf16). On the model's own tensors
    each part stays a separate matmul, as concatenating would copy them on every call.
    """

    __slots__ = ("parts", "sizes")

    def __init__(self, parts: list, sizes: list[int] | None = None):
        self.parts, self.sizes = parts, sizes  # sizes set: parts[0] is one fused Linear

    @staticmethod
    def concatenate(pairs: list[tuple[torch.Tensor, torch.Tensor | None]]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One (weight, bias) from several; a missing bias among present ones becomes zeros."""
        bias = None
        if any(b is not None for _, b in pairs):
            bias = torch.cat([b if b is not None else w.new_zeros(w.shape[0]) for w, b in pairs])
        return torch.cat([w for w, _ in pairs]), bias

    @classmethod
    def fused(cls, linear, sizes: list[int]) -> SplitLinear:
        return cls([linear], sizes)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.sizes is not None:
            return self.parts[0](x).split(self.sizes, dim=-1)
        return tuple(part(x) for part in self.parts)
