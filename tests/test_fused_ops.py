"""The training pass's fused RMSNorm, silu * up and RoPE (rl/fused_ops.py, rollout/csrc/train_fused.cpp) against
the models' own forward, in loss and gradients."""
import sys

import pytest
import torch

from r1lab.models import tiny_model
from r1lab.rl import fused_ops
from r1lab.rl.fused_ops import _kernels, _patches, fused_training_ops

needs_kernel = pytest.mark.skipif(_kernels() is None, reason="the fused training ops did not build here")


def _loss_and_grads(model, ids, fused, bf16):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        if fused:
            with fused_training_ops(model):
                logits = model(input_ids=ids).logits
        else:
            logits = model(input_ids=ids).logits
    loss = (logits.float().log_softmax(-1)[..., 5] * torch.linspace(-1, 1, ids.shape[1])).sum()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _kinds(model) -> list[str]:
    return ["rope" if fused.__name__ == "apply_rotary_pos_emb" else type(holder).__name__
            for holder, _, fused in _patches(model)]


def _originals(model) -> list:
    return [(holder, name, holder.__dict__.get(name)) for holder, name, _ in _patches(model)]


@needs_kernel
# phi3's tiny config has partial rotary (half the head): its RoPE patch is there and falls back to its own function
@pytest.mark.parametrize("family,norms,mlps,ropes", [("llama", 5, 2, 2), ("mistral", 5, 2, 2), ("qwen2", 5, 2, 2),
                                                     ("qwen3", 5, 2, 2), ("phi3", 5, 0, 0), ("olmo2", 0, 2, 2),
                                                     ("smollm3", 0, 2, 1)])
@pytest.mark.parametrize("bf16", [False, True])
def test_fused_ops_give_the_models_loss_and_gradients(family, norms, mlps, ropes, bf16, monkeypatch):
    model = tiny_model(family)
    kinds = _kinds(model)
    assert sum(k.endswith("RMSNorm") for k in kinds) == norms and sum(k.endswith("MLP") for k in kinds) == mlps
    assert kinds.count("rope") == 1
    originals = _originals(model)
    fused_rope_calls = []
    rope = fused_ops._Rope.apply
    monkeypatch.setattr(fused_ops._Rope, "apply", lambda *a: fused_rope_calls.append(1) or rope(*a))
    ids = torch.randint(3, 128, (2, 9))
    ref_loss, ref_grads = _loss_and_grads(model, ids, fused=False, bf16=bf16)
    assert not fused_rope_calls
    loss, grads = _loss_and_grads(model, ids, fused=True, bf16=bf16)
    assert len(fused_rope_calls) == 2 * ropes  # q and k of each rotary layer (SmolLM3's tiny config: one NoPE)
    if bf16:  # rounded differently (the norm's gradient summed in bf16, silu * up rounded once): as close to fp32
        exact = _loss_and_grads(model, ids, fused=False, bf16=False)[1]
        torch.testing.assert_close(loss, ref_loss, atol=2e-2, rtol=2e-2)
        for name, g in exact.items():
            assert (grads[name] - g).norm() <= 1.25 * (ref_grads[name] - g).norm() + 1e-3 * g.norm(), name
    else:
        torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-4)
        for name, g in ref_grads.items():
            torch.testing.assert_close(grads[name], g, atol=1e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")
    assert _originals(model) == originals  # restored


def test_gemma_keeps_its_own_norms_and_mlp():
    assert _kinds(tiny_model("gemma3_text")) == ["rope"]  # (1 + w) norms, post-norms, GELU; HF's RoPE


def _hf_rope(q, k, cos, sin):
    def rotate_half(x):
        return torch.cat((-x[..., x.shape[-1] // 2:], x[..., : x.shape[-1] // 2]), dim=-1)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("table_batch", [1, 3])
def test_fused_rope_matches_the_rotate_half_form(dtype, table_batch):
    torch.manual_seed(0)
    B, S, H, Hkv, D = 3, 7, 4, 2, 16
    # HF's layout: (B, S, H, D) projections viewed as (B, H, S, D)
    q = torch.randn(B, S, H, D).to(dtype).transpose(1, 2).requires_grad_()
    k = torch.randn(B, S, Hkv, D).to(dtype).transpose(1, 2).requires_grad_()
    angles = torch.rand(table_batch, S, D // 2) * 6
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    fused = fused_ops._rope_function(_hf_rope, cast_back=False)
    outs = fused(q, k, cos, sin)
    refs = _hf_rope(q, k, cos, sin)
    grads = [torch.randn(o.shape) for o in refs]
    for out, ref in zip(outs, refs):
        assert out.dtype == ref.dtype == torch.float32
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    fused_grads = torch.autograd.grad(outs, (q, k), grads)
    ref_grads = torch.autograd.grad(refs, (q, k), grads)
    for got, want in zip(fused_grads, ref_grads):
        assert got.dtype == want.dtype == dtype
        tol = 1e-6 if dtype == torch.float32 else 1e-2  # summed in fp32, rounded once (vs two bf16 roundings)
        torch.testing.assert_close(got, want, atol=tol, rtol=tol)


@needs_kernel
def test_fused_rope_falls_back_outside_its_case():
    seen = []
    fused = fused_ops._rope_function(lambda *a: seen.append(a) or "own", cast_back=False)
    q = torch.randn(1, 2, 5, 8)
    half = torch.randn(1, 5, 4)  # partial rotary: cos covers half the head
    assert fused(q, q, half, half) == "own"
    full = torch.randn(1, 5, 8)
    assert fused(q, q, full.double(), full.double()) == "own"
    assert fused(q, q, full.requires_grad_(), full) == "own"
    assert len(seen) == 3


@needs_kernel
def test_rope_patch_is_the_kernels_wrapper_or_the_modules_global():
    model = tiny_model("llama")
    module = sys.modules[type(model.model.layers[0].self_attn).__module__]
    function = module.apply_rotary_pos_emb
    with fused_training_ops(model):
        if isinstance(function, torch.nn.Module):
            assert function.__dict__["forward"].__name__ == "apply_rotary_pos_emb"
        else:
            assert module.apply_rotary_pos_emb is not function
    assert module.apply_rotary_pos_emb is function and "forward" not in function.__dict__


@needs_kernel
def test_gradient_checkpointing_keeps_the_models_forward():
    model = tiny_model("llama")
    model.gradient_checkpointing_enable()
    originals = _originals(model)
    with fused_training_ops(model):
        assert _originals(model) == originals
