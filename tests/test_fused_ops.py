"""The training pass's fused RMSNorm and silu * up (rl/fused_ops.py, rollout/csrc/train_fused.cpp) against the
models' own forward, in loss and gradients."""
import pytest
import torch

from r1lab.models import tiny_model
from r1lab.rl.fused_ops import _kernels, _patchable, fused_training_ops

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


@needs_kernel
@pytest.mark.parametrize("family,norms,mlps", [("llama", 5, 2), ("mistral", 5, 2), ("qwen2", 5, 2), ("qwen3", 5, 2),
                                               ("phi3", 5, 0), ("olmo2", 0, 2), ("smollm3", 0, 2)])
@pytest.mark.parametrize("bf16", [False, True])
def test_fused_ops_give_the_models_loss_and_gradients(family, norms, mlps, bf16):
    model = tiny_model(family)
    kinds = [type(m).__name__ for m, _ in _patchable(model)]
    assert sum(k.endswith("RMSNorm") for k in kinds) == norms and sum(k.endswith("MLP") for k in kinds) == mlps
    ids = torch.randint(3, 128, (2, 9))
    ref_loss, ref_grads = _loss_and_grads(model, ids, fused=False, bf16=bf16)
    loss, grads = _loss_and_grads(model, ids, fused=True, bf16=bf16)
    if bf16:  # rounded differently (the norm's gradient summed in bf16, silu * up rounded once): as close to fp32
        exact = _loss_and_grads(model, ids, fused=False, bf16=False)[1]
        torch.testing.assert_close(loss, ref_loss, atol=2e-2, rtol=2e-2)
        for name, g in exact.items():
            assert (grads[name] - g).norm() <= 1.25 * (ref_grads[name] - g).norm() + 1e-3 * g.norm(), name
    else:
        torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-4)
        for name, g in ref_grads.items():
            torch.testing.assert_close(grads[name], g, atol=1e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")
    assert all("forward" not in vars(m) for m, _ in _patchable(model))  # restored


def test_gemma_keeps_its_own_norms_and_mlp():
    assert _patchable(tiny_model("gemma3_text")) == []  # (1 + w) norms, post-norms, GELU


@needs_kernel
def test_gradient_checkpointing_keeps_the_models_forward():
    model = tiny_model("llama")
    model.gradient_checkpointing_enable()
    with fused_training_ops(model):
        assert all("forward" not in vars(m) for m, _ in _patchable(model))
