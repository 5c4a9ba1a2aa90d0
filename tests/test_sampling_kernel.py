"""The one-pass sampling kernel (rollout/csrc/sampling.cpp) against sampling.py's torch path."""
import pytest
import torch

from r1lab.rollout import decode_kernel, sampling
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.sampling import next_tokens, row_uniforms, sample_rows

kernel = decode_kernel.sampler()
needs_kernel = pytest.mark.skipif(kernel is None, reason="the sampling kernel did not build here")


def generators(n, offset=0):
    return [torch.Generator().manual_seed(offset + i) for i in range(n)]


@needs_kernel
def test_picks_equal_the_torch_inverse_cdf_for_the_same_uniforms():
    torch.manual_seed(0)
    logits = torch.randn(16, 5000) * 3
    ours, theirs = generators(16), generators(16)
    for _ in range(40):
        picked = kernel(logits, 1 / 0.7, row_uniforms(ours))[0]
        assert picked.tolist() == sample_rows((logits / 0.7).softmax(-1), theirs).tolist()


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_log_probs_are_the_log_softmax_of_the_scaled_logits(dtype):
    torch.manual_seed(1)
    logits = (torch.randn(8, 49152) * 4).to(dtype)
    tokens, logprobs = kernel(logits, 1 / 0.6, torch.rand(8, dtype=torch.float64))
    want = (logits.float() / 0.6).log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1)
    assert torch.allclose(logprobs, want, atol=2e-5)


@needs_kernel
def test_filtered_tokens_are_never_drawn_and_the_ends_of_the_unit_interval_stay_inside():
    logits = torch.full((3, 600), float("-inf"))
    logits[:, 10], logits[:, 300], logits[:, 301] = 0.0, 1.0, -1.0
    for u, want in ((0.0, 10), (1 - 1e-16, 301)):
        tokens = kernel(logits, 1.0, torch.full((3,), u, dtype=torch.float64))[0]
        assert tokens.tolist() == [want] * 3
    draws = kernel(logits[:1].expand(4000, -1).contiguous(), 1.0, torch.rand(4000, dtype=torch.float64))[0]
    freq = torch.bincount(draws, minlength=600).float() / 4000
    p = torch.tensor([0.0, 1.0, -1.0]).softmax(-1)
    assert freq[[10, 300, 301]].tolist() == pytest.approx(p.tolist(), abs=0.03)
    assert freq.sum().item() == pytest.approx(freq[[10, 300, 301]].sum().item())


@needs_kernel
def test_next_tokens_is_the_same_with_and_without_the_kernel(monkeypatch):
    torch.manual_seed(2)
    logits = (torch.randn(6, 3000) * 2).bfloat16()
    for params in (SamplingParams(temperature=0.9, logprobs=True), SamplingParams(temperature=1.0, top_p=0.9, top_k=50)):
        with_kernel = next_tokens(logits, params, generators(6))
        monkeypatch.setattr(sampling.decode_kernel, "sampler", lambda: None)
        without = next_tokens(logits, params, generators(6))
        monkeypatch.undo()
        assert with_kernel[0].tolist() == without[0].tolist()
        if params.logprobs:
            assert torch.allclose(with_kernel[1], without[1], atol=2e-5)


def test_the_kernel_turns_off_with_the_switch(monkeypatch):
    monkeypatch.setenv("R1LAB_DECODE_KERNEL", "0")
    assert decode_kernel.sampler.__wrapped__() is None


def test_float16_logits_take_the_torch_path():
    logits = torch.randn(2, 50).half()
    tokens, logprobs = next_tokens(logits, SamplingParams(temperature=1.0, logprobs=True), generators(2))
    assert tokens.shape == (2,) and logprobs.dtype == torch.float32
