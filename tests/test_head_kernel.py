"""The training head's per-block softmax kernel (rollout/csrc/head_logprobs.cpp) against rl.fused_head's torch path."""
import pytest
import torch

from r1lab.rl.fused_head import fused_head_logprobs
from r1lab.rollout import decode_kernel

needs_kernel = pytest.mark.skipif(decode_kernel.head_logprobs() is None, reason="the head kernel did not build here")


def _run(hidden, weight, bias, tokens, upstream, temperature, entropy_grad, dtype, chunk_bytes):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        logp, entropy = fused_head_logprobs(hidden, weight, bias, tokens, temperature, True, entropy_grad,
                                            chunk_bytes=chunk_bytes)
    loss = (logp * upstream[0]).sum() + ((entropy * upstream[1]).sum() if entropy_grad else 0.0)
    loss.backward()
    grads = [t.grad.clone() for t in (hidden, weight, bias)]
    for t in (hidden, weight, bias):
        t.grad = None
    return logp.detach(), entropy.detach(), grads


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature,entropy_grad", [(1.0, False), (0.7, True)])
@pytest.mark.parametrize("keep", [True, False])
def test_the_kernel_computes_what_the_torch_path_computes(dtype, temperature, entropy_grad, keep, monkeypatch):
    monkeypatch.setattr("r1lab.rl.fused_head.KEEP_LOGITS_BYTES", 2**30 if keep else 0)
    torch.manual_seed(0)
    hidden = torch.randn(45, 32, requires_grad=True)
    weight = (torch.randn(1000, 32) * 0.3).requires_grad_()
    bias = (torch.randn(1000) * 0.1).requires_grad_()
    tokens = torch.randint(0, 1000, (45,))
    tokens[:3] = torch.tensor([0, 999, 128])  # the first and last entries of the vocabulary and of a slice
    upstream = torch.randn(45), torch.randn(45)
    args = hidden, weight, bias, tokens, upstream, temperature, entropy_grad, dtype, 4 * 45 * 128  # 8 slices
    ours = _run(*args)
    monkeypatch.setattr("r1lab.rl.fused_head._kernel", lambda *_: None)
    theirs = _run(*args)
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[1], theirs[1], atol=1e-5, rtol=1e-5)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=2e-3, rtol=1e-2)  # bf16 block grads
    for a, b in zip(ours[2], theirs[2]):
        torch.testing.assert_close(a, b, **tol)
