"""GRPO math against hand-computed numbers."""
import math

import pytest
import torch

from r1lab.rl.grpo import LossNormalizers, group_advantages, kl_k3, policy_loss, token_logprobs_and_entropy


def test_group_advantages_hand_computed():
    # group [1, 0, 0, 0]: mean 0.25, unbiased std 0.5
    adv = group_advantages(torch.tensor([1.0, 0, 0, 0, 2, 2, 2, 2]), group_size=4)
    expected = torch.tensor([0.75, -0.25, -0.25, -0.25]) / (0.5 + 1e-4)
    assert torch.allclose(adv[:4], expected, atol=1e-6)
    assert torch.equal(adv[4:], torch.zeros(4))  # a uniform group carries no signal


def test_group_advantages_without_std_scaling():
    adv = group_advantages(torch.tensor([3.0, 1.0]), group_size=2, scale=False)
    assert adv.tolist() == [1.0, -1.0]


def test_group_advantages_rejects_ragged_groups():
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(torch.tensor([1.0, 2.0, 3.0]), group_size=2)


def test_kl_k3_hand_value_nonnegative_and_zero_when_equal():
    value = kl_k3(torch.tensor(math.log(0.5)), torch.tensor(math.log(0.25)))
    assert value.item() == pytest.approx(0.5 - math.log(0.5) - 1)
    a, b = torch.randn(1000), torch.randn(1000)
    assert (kl_k3(a, b) >= 0).all()
    assert torch.equal(kl_k3(a, a), torch.zeros(1000))


def _one_token_loss(ratio: float, adv: float, eps_low=0.2, eps_high=0.2):
    logp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, stats = policy_loss(logp, torch.zeros(1, 1), torch.tensor([adv]), torch.ones(1, 1),
                              eps_low=eps_low, eps_high=eps_high)
    loss.backward()
    return loss.item(), logp.grad.item(), stats["clip_fraction"]


@pytest.mark.parametrize("ratio,adv,loss,clipped", [
    (1.5, 1.0, -1.2, True),    # A > 0, ratio above 1 + eps: capped, no gradient
    (0.5, 1.0, -0.5, False),   # A > 0, ratio below 1 - eps: the unclipped term is smaller, gradient flows
    (1.5, -1.0, 1.5, False),   # A < 0, ratio above 1 + eps: the pessimistic unclipped term wins
    (0.5, -1.0, 0.8, True),    # A < 0, ratio below 1 - eps: capped, no gradient
])
def test_clip_on_both_sides_for_both_signs(ratio, adv, loss, clipped):
    value, grad, clip_fraction = _one_token_loss(ratio, adv)
    assert value == pytest.approx(loss)
    assert (grad == 0.0) == clipped
    assert clip_fraction == (1.0 if clipped else 0.0)
    if not clipped:  # d(-ratio * A)/d logp = -ratio * A
        assert grad == pytest.approx(-ratio * adv)


def test_clip_higher_is_asymmetric():
    assert _one_token_loss(1.25, 1.0, eps_high=0.2)[0] == pytest.approx(-1.2)
    assert _one_token_loss(1.25, 1.0, eps_high=0.28)[0] == pytest.approx(-1.25)


def test_mu_one_means_ratio_one_and_reinforce_gradient():
    logp = torch.log(torch.tensor([[0.3, 0.6], [0.2, 0.9]])).requires_grad_()
    adv = torch.tensor([2.0, -1.0])
    loss, stats = policy_loss(logp, None, adv, torch.ones(2, 2))
    assert stats["ratio_mean"] == pytest.approx(1.0)
    assert loss.item() == pytest.approx(-(2.0 - 1.0) / 2)
    loss.backward()
    # grpo: each token's gradient is -A / (|o_i| * G)
    assert torch.allclose(logp.grad, torch.tensor([[-0.5, -0.5], [0.25, 0.25]]))


def _modes_loss(loss_type, max_length=4):
    # seq 1: one token with A = 1; seq 2: three tokens with A = -1; ratio 1 -> per-token loss = -A
    logp = torch.zeros(2, 3)
    mask = torch.tensor([[1.0, 0, 0], [1, 1, 1]])
    norm = LossNormalizers(num_sequences=2, num_tokens=4, max_length=max_length)
    return policy_loss(logp, None, torch.tensor([1.0, -1.0]), mask, loss_type=loss_type, norm=norm)[0].item()


def test_aggregation_modes_hand_computed():
    assert _modes_loss("grpo") == pytest.approx((-1 / 1 + 3 / 3) / 2)  # 0: per-sequence means
    assert _modes_loss("dapo") == pytest.approx((-1 + 3) / 4)  # token-level mean
    assert _modes_loss("dr_grpo") == pytest.approx((-1 + 3) / (2 * 4))  # constant normaliser


def test_micro_batches_add_up_to_the_full_batch_loss():
    torch.manual_seed(0)
    logp, old = torch.randn(4, 5), torch.randn(4, 5)
    mask = (torch.rand(4, 5) > 0.3).float()
    adv = torch.randn(4)
    for mode in ("grpo", "dr_grpo", "dapo"):
        norm = LossNormalizers(4, int(mask.sum()), 5)
        full = policy_loss(logp, old, adv, mask, loss_type=mode, norm=norm)[0]
        parts = sum(policy_loss(logp[s], old[s], adv[s], mask[s], loss_type=mode, norm=norm)[0]
                    for s in (slice(0, 1), slice(1, 4)))
        assert parts.item() == pytest.approx(full.item(), abs=1e-6)


def test_kl_penalty_enters_the_loss():
    logp = torch.zeros(1, 2)
    ref = torch.log(torch.tensor([[0.5, 0.5]]))
    base, _ = policy_loss(logp, None, torch.tensor([0.0]), torch.ones(1, 2))
    with_kl, stats = policy_loss(logp, None, torch.tensor([0.0]), torch.ones(1, 2), beta=0.1, ref_logp=ref)
    k3 = 0.5 - math.log(0.5) - 1
    assert base.item() == 0.0
    assert with_kl.item() == pytest.approx(0.1 * k3)
    assert stats["kl"] == pytest.approx(k3)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_one_pass_token_logprobs_match_log_softmax_in_value_and_gradient(temperature):
    torch.manual_seed(0)
    logits = (torch.randn(3, 5, 11, dtype=torch.float64) * 3).requires_grad_()
    tokens = torch.randint(0, 11, (3, 5))
    weights = torch.randn(3, 5, dtype=torch.float64)  # an arbitrary upstream gradient
    logp, entropy = token_logprobs_and_entropy(logits, tokens, temperature, with_entropy=True)
    (logp * weights).sum().backward()
    ours = logits.grad.clone()
    logits.grad = None
    reference_all = torch.log_softmax(logits / temperature, dim=-1)
    reference = reference_all.gather(-1, tokens[..., None]).squeeze(-1)
    (reference * weights).sum().backward()
    torch.testing.assert_close(logp, reference.detach())
    torch.testing.assert_close(ours, logits.grad)
    torch.testing.assert_close(entropy, -(reference_all.exp() * reference_all).sum(-1).detach())
    assert not entropy.requires_grad


def test_one_pass_token_logprobs_of_bf16_logits_are_fp32_with_bf16_gradients():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 50).bfloat16().requires_grad_()
    tokens = torch.randint(0, 50, (2, 4))
    logp, entropy = token_logprobs_and_entropy(logits, tokens)
    assert logp.dtype == torch.float32 and entropy is None
    torch.testing.assert_close(logp, torch.log_softmax(logits.float(), -1).gather(-1, tokens[..., None]).squeeze(-1))
    logp.sum().backward()
    assert logits.grad.dtype == torch.bfloat16
