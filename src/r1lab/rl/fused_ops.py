"""The training pass's RMSNorms and MLP activations as one C++ op each way (csrc/train_fused.cpp), swapped in
for a forward by `fused_training_ops(model)`.

- Pre-norms of Llama-style decoders (`input_layernorm`, `post_attention_layernorm`, the final `norm`) whose class
  computes HF's `weight * (x * rsqrt(mean(x^2) + eps))` on fp32 weights and inputs: Llama, Mistral, Qwen2,
  Qwen3, Phi-3. They feed only linear layers (q, k, v; gate, up; the LM head), so under bf16 autocast the op
  writes its output in bf16 once, the value each consumer's own cast would have made; the gradient then
  arrives summed in bf16 (autograd adds the consumers' bf16 gradients) where the unfused path summed fp32 casts.
- The gated MLP `down(silu(gate(x)) * up(x))` of Llama, Mistral, Qwen2/3, OLMo 2, SmolLM3: silu-times-up in one
  pass, computed in fp32 and rounded once (the unfused bf16 ops rounded after each).

Everything else (Gemma's 1 + w norms and GELU, OLMo 2's post-norms, Qwen3's q/k norms, other dtypes, GPUs, a
machine where the kernels do not build) keeps the model's own forward. Measured in docs/grpo_step.md.
"""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from r1lab.rl.logprobs import unwrapped

NORM_CLASSES = {"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm", "Phi3RMSNorm"}
PRE_NORM_NAMES = {"input_layernorm", "post_attention_layernorm", "norm"}
MLP_CLASSES = {"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP", "Olmo2MLP", "SmolLM3MLP"}


def _kernels():
    from r1lab.rollout.decode_kernel import train_fused

    return train_fused()


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, eps: float, bf16_out: bool):
        y, rstd = _kernels().rms_norm_forward(x, weight, eps, bf16_out)
        ctx.save_for_backward(x, weight, rstd)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y: Tensor):
        x, weight, rstd = ctx.saved_tensors
        dx, dw = _kernels().rms_norm_backward(grad_y.contiguous(), x, weight, rstd)
        return dx, dw, None, None


class _SiluMul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate: Tensor, up: Tensor):
        ctx.save_for_backward(gate, up)
        return _kernels().silu_mul_forward(gate, up)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        gate, up = ctx.saved_tensors
        return _kernels().silu_mul_backward(grad.contiguous(), gate, up)


def _norm_forward(module: torch.nn.Module):
    original = type(module).forward

    def forward(hidden_states: Tensor) -> Tensor:
        if hidden_states.dtype != torch.float32 or module.weight.dtype != torch.float32 or not hidden_states.is_cpu:
            return original(module, hidden_states)
        bf16_out = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        shape = hidden_states.shape
        flat = hidden_states.reshape(-1, shape[-1]).contiguous()
        return _RMSNorm.apply(flat, module.weight, float(module.variance_epsilon), bf16_out).view(shape)

    return forward


def _mlp_forward(module: torch.nn.Module):
    def forward(x: Tensor) -> Tensor:
        gate, up = module.gate_proj(x), module.up_proj(x)
        if gate.is_cpu and gate.dtype == up.dtype and gate.dtype in (torch.float32, torch.bfloat16):
            hidden = _SiluMul.apply(gate.contiguous(), up.contiguous())
        else:
            hidden = module.act_fn(gate) * up
        return module.down_proj(hidden)

    return forward


def _patchable(model: torch.nn.Module) -> list[tuple[torch.nn.Module, object]]:
    """(module, its fused forward) for every module of `model` this applies to."""
    found = []
    for name, m in unwrapped(model).named_modules():
        kind = type(m).__name__
        if kind in NORM_CLASSES and name.rsplit(".", 1)[-1] in PRE_NORM_NAMES and hasattr(m, "variance_epsilon"):
            found.append((m, _norm_forward(m)))
        elif kind in MLP_CLASSES and type(getattr(m, "act_fn", None)).__name__ in ("SiLUActivation", "SiLU"):
            found.append((m, _mlp_forward(m)))
    return found


@contextlib.contextmanager
def fused_training_ops(model: torch.nn.Module):
    """Inside, `model`'s pre-norms and gated MLPs run the fused ops (where the kernels build; else nothing changes)."""
    base = unwrapped(model)
    checkpointed = any(getattr(m, "gradient_checkpointing", False) for m in base.modules())
    # (a checkpoint's recompute runs after this context: the model's own ops, another output dtype)
    patched = _patchable(base) if not checkpointed and _kernels() is not None else []
    for m, forward in patched:
        m.forward = forward  # an instance attribute: nn.Module.__call__ finds it before the class's
    try:
        yield
    finally:
        for m, _ in patched:
            del m.forward
