"""GSPO, CISPO, SAPO, the KL estimators, advantages, rollout correction and the entropy controls,
against hand-computed numbers and against TRL's documented expressions (written out here)."""
import math

import pytest
import torch

from r1lab.rl.advantages import compute_advantages
from r1lab.rl.grpo import LOSS_TYPES, LossNormalizers, kl_estimate, policy_loss
from r1lab.rl.mismatch import entropy_threshold, high_entropy_mask, mismatch_sums, rollout_weights

LN = math.log


def _loss(loss_type, logp_values, old_values, adv, **kw):
    logp = torch.tensor([logp_values], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([old_values], dtype=torch.float64)
    loss, stats = policy_loss(logp, old, torch.tensor([adv], dtype=torch.float64), torch.ones_like(old),
                              loss_type=loss_type, norm=LossNormalizers(1, logp.shape[1], logp.shape[1]), **kw)
    loss.backward()
    return loss.item(), logp.grad[0].tolist(), stats


# ---------------------------------------------------------------- GSPO (pi_old != pi: the mu > 1 case)
@pytest.mark.parametrize("ratio,adv,loss,token_grad", [
    (1.5, 1.0, -1.2, 0.0),     # A > 0 above 1 + eps: clipped, no gradient
    (0.5, 1.0, -0.5, -0.25),   # A > 0 below 1 - eps: unclipped, d(-s A)/d logp_t = -A s / |o| = -0.5 / 2
    (1.5, -1.0, 1.5, 0.75),    # A < 0 above: the pessimistic unclipped term, 1.5 / 2
    (0.5, -1.0, 0.8, 0.0),     # A < 0 below: clipped
])
def test_gspo_clips_the_sequence_ratio_on_both_sides(ratio, adv, loss, token_grad):
    value, grad, stats = _loss("gspo", [LN(ratio) + LN(0.3), LN(ratio) + LN(0.6)], [LN(0.3), LN(0.6)], adv)
    assert value == pytest.approx(loss)
    assert grad == pytest.approx([token_grad, token_grad])
    assert stats["clip_fraction"] == (1.0 if token_grad == 0.0 else 0.0)


def test_gspo_uses_the_geometric_mean_not_each_token_ratio():
    # token ratios 2 and 0.5 (each outside the clip range) average to a sequence ratio of exactly 1
    value, grad, stats = _loss("gspo", [LN(2.0), LN(0.5)], [0.0, 0.0], 1.0)
    assert value == pytest.approx(-1.0)
    assert grad == pytest.approx([-0.5, -0.5]) and stats["clip_fraction"] == 0.0
    assert _loss("grpo", [LN(2.0), LN(0.5)], [0.0, 0.0], 1.0)[0] == pytest.approx(-(1.2 + 0.5) / 2)


# ---------------------------------------------------------------- CISPO
@pytest.mark.parametrize("ratio,adv,weight", [(1.5, 1.0, 1.2), (1.5, -1.0, 1.2), (0.5, 1.0, 0.8), (0.5, -1.0, 0.8)])
def test_cispo_clips_the_weight_and_keeps_every_gradient(ratio, adv, weight):
    logp = LN(0.4 * ratio)
    value, grad, stats = _loss("cispo", [logp], [LN(0.4)], adv)
    assert value == pytest.approx(-weight * adv * logp)
    assert grad == pytest.approx([-weight * adv])  # never 0: the clip only bounds the weight
    assert stats["clip_fraction"] == 1.0


def test_cispo_averages_over_the_batch_tokens():
    mask = torch.tensor([[1.0, 0, 0], [1, 1, 1]])
    logp = torch.log(torch.tensor([[0.5, 1, 1], [0.25, 0.5, 0.5]]))
    loss, _ = policy_loss(logp, None, torch.tensor([1.0, -1.0]), mask, loss_type="cispo",
                          norm=LossNormalizers(2, 4, 3))
    assert loss.item() == pytest.approx((-LN(0.5) + LN(0.25) + 2 * LN(0.5)) / 4)


# ---------------------------------------------------------------- SAPO
@pytest.mark.parametrize("ratio,adv", [(1.5, 1.0), (0.5, 1.0), (1.5, -1.0), (0.5, -1.0)])
def test_sapo_soft_gate_value_and_gradient(ratio, adv):
    tau = 1.0 if adv > 0 else 1.05
    gate = 1 / (1 + math.exp(-tau * (ratio - 1)))
    value, grad, _ = _loss("sapo", [LN(0.4 * ratio)], [LN(0.4)], adv)
    assert value == pytest.approx(-gate * 4 / tau * adv)
    assert grad == pytest.approx([-adv * 4 * gate * (1 - gate) * ratio])  # d gate/dr * dr/dlogp


def test_sapo_at_ratio_one_has_the_plain_policy_gradient():
    assert _loss("sapo", [LN(0.3)], [LN(0.3)], 2.0)[1] == pytest.approx([-2.0])


# ---------------------------------------------------------------- TRL's expressions on random tensors
def _random_batch(seed=0, b=5, t=7):
    g = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(b, t, generator=g, dtype=torch.float64) * 3).requires_grad_()
    old = (logp.detach() + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.3)
    mask = (torch.rand(b, t, generator=g) > 0.3).double()
    mask[:, 0] = 1.0
    return logp, old, mask, torch.randn(b, generator=g, dtype=torch.float64)


def _value_and_grad(fn, logp):
    logp.grad = None
    value = fn()
    value.backward()
    return value.item(), logp.grad.clone()


def test_gspo_equals_trls_sequence_level_importance_sampling():
    logp, old, mask, adv = _random_batch()
    eps_low, eps_high = 3e-4, 4e-4  # GSPO's paper-scale clip range

    def trl():  # TRL GRPOTrainer, importance_sampling_level="sequence", loss_type="grpo"
        log_ratio = logp - old
        log_importance_weights = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
        coef_1 = torch.exp(log_importance_weights)
        coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
        per_token_loss = -torch.min(coef_1 * adv.unsqueeze(1), coef_2 * adv.unsqueeze(1))
        return ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()

    ours = _value_and_grad(lambda: policy_loss(logp, old, adv, mask, loss_type="gspo", eps_low=eps_low,
                                               eps_high=eps_high)[0], logp)
    theirs = _value_and_grad(trl, logp)
    assert ours[0] == pytest.approx(theirs[0], abs=1e-12)
    torch.testing.assert_close(ours[1], theirs[1])


def test_cispo_equals_trls_formula_with_its_epsilon_high_as_our_1_plus_eps_high():
    logp, old, mask, adv = _random_batch(1)
    trl_epsilon_high = 1.1  # TRL clamps the ratio at epsilon_high itself, with no lower bound

    def trl():  # TRL GRPOTrainer, loss_type="cispo"
        coef_1 = torch.exp(logp - old)
        clamped_ratios = torch.clamp(coef_1, max=trl_epsilon_high).detach()
        per_token_loss = -clamped_ratios * adv.unsqueeze(1) * logp
        return (per_token_loss * mask).sum() / mask.sum()

    # r1lab: clip(r, 1 - eps_low, 1 + eps_high); eps_low = 1 puts the lower bound at 0, where no ratio reaches
    ours = _value_and_grad(lambda: policy_loss(logp, old, adv, mask, loss_type="cispo", eps_low=1.0,
                                               eps_high=trl_epsilon_high - 1.0)[0], logp)
    theirs = _value_and_grad(trl, logp)
    assert ours[0] == pytest.approx(theirs[0], abs=1e-12)
    torch.testing.assert_close(ours[1], theirs[1])


# ---------------------------------------------------------------- micro-batches add up, for every option
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("options", [{}, {"beta": 0.1, "kl_estimator": "k3_ratio"}, {"beta": 0.1, "kl_estimator": "k2"},
                                     {"entropy_coef": 0.05}, {"weights": True}])
def test_micro_batches_add_up_for_every_loss(loss_type, options):
    logp, old, mask, adv = _random_batch(2, b=6)
    g = torch.Generator().manual_seed(3)
    ref = logp.detach() + torch.randn(logp.shape, generator=g, dtype=torch.float64) * 0.2
    entropy = (torch.rand(logp.shape, generator=g, dtype=torch.float64) * 2).requires_grad_()
    weights = torch.rand(logp.shape, generator=g, dtype=torch.float64) * 2
    policy_mask = (torch.rand(logp.shape, generator=g) > 0.4).double()
    norm = LossNormalizers(6, int(mask.sum()), 7)
    kw = {k: v for k, v in options.items() if k != "weights"}

    def loss(s):
        return policy_loss(logp[s], old[s], adv[s], mask[s], loss_type=loss_type, norm=norm, ref_logp=ref[s],
                           entropy=entropy[s], policy_mask=policy_mask[s],
                           is_weights=weights[s] if options.get("weights") else None, **kw)[0]

    full = _value_and_grad(lambda: loss(slice(0, 6)), logp)
    parts = _value_and_grad(lambda: loss(slice(0, 2)) + loss(slice(2, 6)), logp)
    assert parts[0] == pytest.approx(full[0], abs=1e-12)
    torch.testing.assert_close(parts[1], full[1])


# ---------------------------------------------------------------- KL estimators
@pytest.mark.parametrize("estimator,value,grad", [
    ("k1", LN(2), 1.0),                       # log(pi / pi_ref); gradient 1 (0 in expectation)
    ("k2", 0.5 * LN(2) ** 2, LN(2)),          # gradient log(pi / pi_ref): that of KL(pi || pi_ref)
    ("k3", 0.5 - LN(0.5) - 1, 0.5),           # gradient 1 - pi_ref / pi: that of KL(pi_ref || pi)
    ("k3_ratio", 0.5 - LN(0.5) - 1, LN(2)),   # at pi_old = pi: k3's value, k2's (unbiased) gradient
])
def test_kl_estimators_hand_computed(estimator, value, grad):
    logp = torch.tensor(LN(0.5), dtype=torch.float64, requires_grad=True)
    ratio = torch.exp(logp - logp.detach())
    kl = kl_estimate(logp, torch.tensor(LN(0.25), dtype=torch.float64), estimator, ratio)
    kl.backward()
    assert kl.item() == pytest.approx(value)
    assert logp.grad.item() == pytest.approx(grad)


def test_k3_ratio_weighs_k3_by_the_ratio_off_policy():
    ratio = torch.tensor(1.5, dtype=torch.float64)
    kl = kl_estimate(torch.tensor(LN(0.5)), torch.tensor(LN(0.25)), "k3_ratio", ratio)
    assert kl.item() == pytest.approx(1.5 * (0.5 - LN(0.5) - 1))


# ---------------------------------------------------------------- advantages
def test_rloo_uses_the_mean_of_the_other_samples():
    adv = compute_advantages(torch.tensor([1.0, 0, 0, 0]), 4, "rloo", "none")
    assert adv.tolist() == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])


def test_batch_scaling_divides_by_the_batch_reward_std():
    rewards = torch.tensor([1.0, 0, 0, 0, 2, 2, 2, 2])
    adv = compute_advantages(rewards, 4, "group", "batch")
    std = math.sqrt(6.875 / 7)  # unbiased std of the 8 rewards (mean 1.125)
    assert adv.tolist() == pytest.approx([0.75 / (std + 1e-4), -0.25 / (std + 1e-4), -0.25 / (std + 1e-4),
                                          -0.25 / (std + 1e-4), 0, 0, 0, 0], rel=1e-5)


def test_reinforce_pp_divides_the_group_centred_rewards_by_their_batch_std():
    adv = compute_advantages(torch.tensor([1.0, 0, 0, 0, 2, 2, 2, 2]), 4, "reinforce_pp")
    std = math.sqrt(0.75 / 7)  # centred: [0.75, -0.25 x3, 0 x4]
    assert adv[:4].tolist() == pytest.approx([0.75 / (std + 1e-4)] + [-0.25 / (std + 1e-4)] * 3, rel=1e-5)
    assert adv[4:].tolist() == [0, 0, 0, 0]


def test_scale_rewards_true_and_false_keep_their_meaning():
    rewards = torch.tensor([3.0, 1.0])
    assert torch.equal(compute_advantages(rewards, 2, scale=True), compute_advantages(rewards, 2, scale="group"))
    assert compute_advantages(rewards, 2, scale=False).tolist() == [1.0, -1.0]


# ---------------------------------------------------------------- rollout mismatch
def _planted():
    sampler = torch.log(torch.tensor([[0.1, 0.5, 0.4]], dtype=torch.float64))
    trainer = sampler + torch.log(torch.tensor([[4.0, 1.0, 0.5]], dtype=torch.float64))  # ratios 4, 1, 0.5
    return trainer, sampler, torch.ones(1, 3, dtype=torch.float64)


def test_mismatch_sums_on_a_planted_gap():
    sums = mismatch_sums(*_planted())
    assert sums["abs_diff"] == pytest.approx(LN(4) + LN(2))
    assert sums["k3"] == pytest.approx((4 - 1 - LN(4)) + (0.5 - 1 - LN(0.5)))
    assert sums["max_ratio"] == pytest.approx(4.0) and sums["tokens"] == 3


@pytest.mark.parametrize("mode,level,cap,expected", [
    ("tis", "token", 2.0, [[2.0, 1.0, 0.5]]),
    ("mis", "token", 2.0, [[0.0, 1.0, 0.5]]),
    ("tis", "sequence", 1.5, [[1.5]]),  # sequence ratio 4 * 1 * 0.5 = 2
    ("mis", "sequence", 1.5, [[0.0]]),
    ("mis", "sequence", 3.0, [[2.0]]),
])
def test_tis_and_mis_weights_on_planted_mismatches(mode, level, cap, expected):
    assert rollout_weights(*_planted(), mode, level, cap).flatten().tolist() == pytest.approx(expected[0])


def test_rollout_weights_scale_each_tokens_policy_term():
    trainer, sampler, mask = _planted()
    weights = rollout_weights(trainer, sampler, mask, "mis", "token", 2.0)
    logp = trainer.clone().requires_grad_()
    loss, _ = policy_loss(logp, None, torch.tensor([1.0], dtype=torch.float64), mask, loss_type="dapo",
                          is_weights=weights)
    loss.backward()
    assert loss.item() == pytest.approx(-(0 + 1 + 0.5) / 3)
    assert logp.grad.flatten().tolist() == pytest.approx([0.0, -1 / 3, -0.5 / 3])


# ---------------------------------------------------------------- entropy controls
def test_top_entropy_mask_keeps_the_highest_entropy_tokens():
    entropy = torch.tensor([[0.1, 0.5, 0.9, 0.3]])
    mask = torch.tensor([[1.0, 1, 1, 1]])
    threshold = entropy_threshold(entropy.flatten().tolist(), 0.5)
    assert threshold == pytest.approx(0.4)  # the median of 0.1, 0.3, 0.5, 0.9
    assert high_entropy_mask(entropy, mask, threshold).tolist() == [[0.0, 1.0, 1.0, 0.0]]
    assert high_entropy_mask(entropy, torch.tensor([[1.0, 1, 0, 1]]), threshold).tolist() == [[0.0, 1.0, 0.0, 0.0]]
    assert entropy_threshold([0.1, 0.2], 1.0) == -math.inf  # quantile 1: every token


def test_policy_mask_drops_the_policy_term_but_not_the_normaliser():
    logp = torch.zeros(1, 2, requires_grad=True)
    loss, _ = policy_loss(logp, None, torch.tensor([1.0]), torch.ones(1, 2), loss_type="dapo",
                          policy_mask=torch.tensor([[1.0, 0.0]]))
    loss.backward()
    assert loss.item() == pytest.approx(-0.5)
    assert logp.grad.tolist() == [[-0.5, 0.0]]


def test_entropy_bonus_enters_the_loss_with_its_gradient():
    entropy = torch.tensor([[0.5, 1.5]], requires_grad=True)
    loss, _ = policy_loss(torch.zeros(1, 2), None, torch.tensor([0.0]), torch.ones(1, 2), entropy=entropy,
                          entropy_coef=0.1)
    loss.backward()
    assert loss.item() == pytest.approx(-0.1 * 1.0)  # grpo: the sequence mean of -coef * H
    assert entropy.grad.flatten().tolist() == pytest.approx([-0.05, -0.05])


def test_dr_grpo_without_normalisers_names_the_max_length():
    with pytest.raises(ValueError, match="max_length"):
        policy_loss(torch.zeros(1, 3), None, torch.tensor([1.0]), torch.ones(1, 3), loss_type="dr_grpo")
