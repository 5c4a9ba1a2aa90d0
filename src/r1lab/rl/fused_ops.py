"""The training pass's RMSNorms and MLP activations as one C++ op each way (csrc/train_fused.cpp), swapped in
for a forward by `fused_training_ops(model)`.

- Pre-norms of Llama-style decoders (`input_layernorm`, `post_attention_layernorm`, the final `norm`) whose class
  computes HF's `weight * (x * rsqrt(mean(x^2) + eps))` on fp32 weights and inputs: Llama, Mistral, Qwen2,
  Qwen3, Phi-3. They feed only linear layers (q, k, v; gate, up; the LM head), so under bf16 autocast the op
  writes its output in bf16 once, the value each consumer's own cast would have made; the gradient then
  arrives summed in bf16 (autograd adds the consumers' bf16 gradients) where the unfused path summed fp32 casts.
- The gated MLP `down(silu(gate(x)) * up(x))` of Llama, Mistral, Qwen2/3, OLMo 2, SmolLM3: silu-times-up in one
  pass, computed in fp32 and rounded once (the unfused bf16 ops rounded after each).
- RoPE: the modeling module's `apply_rotary_pos_emb` where it is HF's rotate-half form over the whole head
  (ROPE_FAMILIES), one pass for q and one for k each way, fp32 out as the unfused type promotion gives (OLMo 2/3
  cast back to q's dtype, as their own function does); the gradient is summed in fp32 and rounded once.

Everything else (Gemma's 1 + w norms and GELU, OLMo 2's post-norms, Qwen3's q/k norms, partial rotary, other
dtypes, GPUs, a machine where the kernels do not build) keeps the model's own forward. Measured in docs/grpo_step.md.
"""
from __future__ import annotations

import contextlib
import sys

import torch
from torch import Tensor

from r1lab.rl.logprobs import unwrapped

NORM_CLASSES = {"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm", "Phi3RMSNorm"}
PRE_NORM_NAMES = {"input_layernorm", "post_attention_layernorm", "norm"}
MLP_CLASSES = {"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP", "Olmo2MLP", "SmolLM3MLP"}
# modeling modules whose apply_rotary_pos_emb(q, k, cos, sin) is q * cos + rotate_half(q) * sin -> True where the
# result is cast back to q's dtype
ROPE_FAMILIES = {"llama": False, "mistral": False, "qwen2": False, "qwen3": False, "smollm3": False, "gemma3": False,
                 "granite": False, "phi3": False, "olmo2": True, "olmo3": True}


_ABSENT = object()


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


class _Rope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, cos: Tensor, sin: Tensor):
        ctx.save_for_backward(cos, sin)
        ctx.bf16_in = x.dtype == torch.bfloat16
        return _kernels().rope_forward(x, cos, sin)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        cos, sin = ctx.saved_tensors
        return _kernels().rope_backward(grad.contiguous(), cos, sin, ctx.bf16_in), None, None


def _rope_function(original, cast_back: bool):
    """`original`'s signature and results; the fused op where it applies (every other case: `original`)."""
    def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1, *args, **kwargs):
        fits = (not args and not kwargs and unsqueeze_dim == 1 and q.dim() == 4 and k.dim() == 4 and cos.dim() == 3
                and q.is_cpu and q.dtype == k.dtype and q.dtype in (torch.float32, torch.bfloat16)
                and cos.dtype == sin.dtype == torch.float32 and cos.shape == sin.shape
                and cos.shape[-1] == q.shape[-1] == k.shape[-1] and cos.shape[0] in (1, q.shape[0])
                and not (cos.requires_grad or sin.requires_grad))
        if not fits:
            return original(q, k, cos, sin, unsqueeze_dim, *args, **kwargs)
        cos, sin = cos.contiguous(), sin.contiguous()
        # (B, H, S, D) views of (B, S, H, D) projections, as HF lays them out: rotated in that memory order
        q_out, k_out = (_Rope.apply(x.transpose(1, 2).contiguous(), cos, sin).transpose(1, 2) for x in (q, k))
        return (q_out.to(q.dtype), k_out.to(k.dtype)) if cast_back else (q_out, k_out)

    return apply_rotary_pos_emb


def _rope_patches(model: torch.nn.Module) -> list[tuple[object, str, object]]:
    """(holder, attribute, fused replacement) for each modeling module of `model`'s attention layers in
    ROPE_FAMILIES. transformers wraps the function in a hub-kernel nn.Module where the `kernels` package is
    installed: then its `forward` is replaced, else the module's global."""
    patches, seen = [], set()
    for m in model.modules():
        module = sys.modules.get(type(m).__module__)
        family = getattr(module, "__name__", "").rsplit(".", 1)[-1].removeprefix("modeling_")
        if family not in ROPE_FAMILIES or id(module) in seen or not hasattr(module, "apply_rotary_pos_emb"):
            continue
        seen.add(id(module))
        function = module.apply_rotary_pos_emb
        if isinstance(function, torch.nn.Module):
            patches.append((function, "forward", _rope_function(function.forward, ROPE_FAMILIES[family])))
        else:
            patches.append((module, "apply_rotary_pos_emb", _rope_function(function, ROPE_FAMILIES[family])))
    return patches


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


def _patches(model: torch.nn.Module) -> list[tuple[object, str, object]]:
    """(holder, attribute, fused replacement) for every module of `model` this applies to."""
    found = []
    for name, m in model.named_modules():
        kind = type(m).__name__
        if kind in NORM_CLASSES and name.rsplit(".", 1)[-1] in PRE_NORM_NAMES and hasattr(m, "variance_epsilon"):
            found.append((m, "forward", _norm_forward(m)))
        elif kind in MLP_CLASSES and type(getattr(m, "act_fn", None)).__name__ in ("SiLUActivation", "SiLU"):
            found.append((m, "forward", _mlp_forward(m)))
    return found + _rope_patches(model)


@contextlib.contextmanager
def fused_training_ops(model: torch.nn.Module):
    """Inside, `model`'s pre-norms, gated MLPs and RoPE run the fused ops (where the kernels build; else nothing
    changes). The RoPE patch is its modeling module's: other models of that family inside the context use it too."""
    base = unwrapped(model)
    checkpointed = any(getattr(m, "gradient_checkpointing", False) for m in base.modules())
    # (a checkpoint's recompute runs after this context: the model's own ops, another output dtype)
    patches = _patches(base) if not checkpointed and _kernels() is not None else []
    # an nn.Module's instance `forward` is found before its class's; what was there before comes back after
    before = [(holder, name, holder.__dict__.get(name, _ABSENT)) for holder, name, _ in patches]
    for holder, name, replacement in patches:
        setattr(holder, name, replacement)
    try:
        yield
    finally:
        for holder, name, value in reversed(before):
            if value is _ABSENT:
                delattr(holder, name)
            else:
                setattr(holder, name, value)
