"""The training half of a GRPO step: this rank's samples, packed into micro-batches, drive `mu` optimizer
updates of the clipped policy loss (rl.grpo), with the rollout-mismatch measurement and correction
(rl.mismatch) and the entropy controls on the way. Micro-batch losses use whole-batch normalisers, so
micro-batches and ranks add up to the one-process full-batch gradient."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from r1lab import dist
from r1lab.rl.batch import padded_rows
from r1lab.rl.config import GRPOConfig
from r1lab.rl.fused_ops import fused_training_ops
from r1lab.rl.grpo import LossNormalizers, policy_loss
from r1lab.rl.layout import filler_batch, pack_for_scoring
from r1lab.rl.mismatch import entropy_threshold, high_entropy_mask, mismatch_sums, rollout_weights

EMPTY_STATS = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "entropy": 0.0, "grad_norm": 0.0}


@dataclass
class StepBatch:
    """This rank's share of one step, ready to train on."""

    batches: list  # micro-batches (on the device), padded with None to the busiest rank's count
    advantages: Tensor  # (n,) one per counted sample, indexed by a micro-batch's `index`
    sampler_logps: list[Tensor | None]  # per micro-batch: the engine's log-probs (B, Wc), or None
    norm: LossNormalizers
    score: Callable
    filler: object  # what a padding (None) micro-batch runs: the collectives need every rank's forward
    measured: bool  # the engine returned sampling log-probs (the same on every rank: one engine kind)


def prepare_step(completion_ids: list[list[int]], prompt_ids: list[list[int]], counted: list[int],
                 advantages: Tensor, sampler_logprobs: list[list[float]] | None, g: GRPOConfig, pad_id: int,
                 device: torch.device) -> StepBatch | None:
    """Pack the counted samples; None when no rank has any (no signal this step, no wasted passes)."""
    totals = dist.all_reduce_sum([len(counted), sum(len(completion_ids[i]) for i in counted)])
    if not totals[0]:
        return None
    norm = LossNormalizers(int(totals[0]), int(totals[1]), g.max_new_tokens)
    batches, score = pack_for_scoring(prompt_ids, completion_ids, counted, g.group_size, pad_id,
                                      g.micro_batch_size, g.layout, device, g.micro_batch_tokens)
    sampler = [None] * len(batches)
    if sampler_logprobs is not None:
        sampler = [padded_rows([sampler_logprobs[counted[r]] for r in b.index], b.completion_mask.shape[1]).to(device)
                   for b in batches]
    batches = dist.pad_to_busiest(batches)
    sampler += [None] * (len(batches) - len(sampler))
    return StepBatch(batches, advantages[counted].to(device), sampler, norm, score, filler_batch(score, pad_id, device),
                     measured=sampler_logprobs is not None)


@dataclass
class Frozen:
    """What the update needs from the weights as they were when sampling (no gradient)."""

    old_logps: list[Tensor] | None = None  # pi_old, when mu > 1
    ref_logps: list[Tensor | None] | None = None  # pi_ref, when beta > 0
    entropies: list[Tensor] | None = None  # per micro-batch, for top_entropy_quantile's mask
    entropy_floor: float = -float("inf")  # top_entropy_quantile's threshold
    sums: dict[str, float] = field(default_factory=dict)  # metrics accumulated over the micro-batches


class Learner:
    """The model that trains, its optimizer and the reference model: runs one step's updates."""

    def __init__(self, model, policy, optimizer, scheduler, g: GRPOConfig, device: torch.device, bf16: bool):
        self.model, self.policy, self.optimizer, self.scheduler, self.g = model, policy, optimizer, scheduler, g
        self.autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        self.chunk_bytes = g.logits_chunk_mb * 2**20

    def _score(self, batch, with_entropy=False, entropy_grad=False):
        with fused_training_ops(self.model):
            return self.step.score(self.model, batch, self.g.temperature, with_entropy=with_entropy,
                                   entropy_grad=entropy_grad, chunk_bytes=self.chunk_bytes)

    def _frozen(self) -> Frozen:
        g, sb, frozen = self.g, self.step, Frozen()
        top_entropy = g.top_entropy_quantile < 1.0
        if g.mu > 1 or top_entropy:  # pi_old = the sampling policy, frozen before the first update
            with torch.no_grad(), self.autocast():
                passes = [self._score(b or sb.filler, with_entropy=top_entropy) for b in sb.batches]
            frozen.old_logps = [logp for logp, _ in passes] if g.mu > 1 else None
            if top_entropy:  # the threshold over the whole step, every rank's tokens; fixed for all mu updates
                frozen.entropies = [ent for _, ent in passes]
                mine = [float(e) for (_, ent), b in zip(passes, sb.batches) if b is not None
                        for e in ent[b.completion_mask > 0]]
                every = [e for part in dist.all_gather_objects(mine) for e in part]
                frozen.entropy_floor = entropy_threshold(every, g.top_entropy_quantile)
        if g.beta > 0:
            with self.autocast():
                frozen.ref_logps = [self.policy.reference_logprobs(sb.score, b, g.temperature) if b else None
                                    for b in sb.batches]
        return frozen

    def _micro_batch(self, j: int, b, update: int, frozen: Frozen) -> None:
        g, sb, sums = self.g, self.step, frozen.sums
        with self.autocast():
            logp, entropy = self._score(b or sb.filler, with_entropy=update == 0 and b is not None,
                                        entropy_grad=g.entropy_coef > 0 and b is not None)
        if b is None:
            (logp * 0.0).sum().backward()  # joins the collectives, adds nothing
            return
        old = frozen.old_logps[j] if frozen.old_logps else None
        sampled_at = old if old is not None else logp.detach()  # the trainer's log-probs at sampling time
        sampler, weights = sb.sampler_logps[j], None
        if sampler is not None and update == 0:
            for k, v in mismatch_sums(sampled_at, sampler, b.completion_mask).items():
                sums[f"mm_{k}"] = max(sums.get(f"mm_{k}", 0.0), v) if k == "max_ratio" else sums.get(f"mm_{k}", 0.0) + v
        if g.rollout_correction != "none":
            weights = rollout_weights(sampled_at, sampler, b.completion_mask, g.rollout_correction,
                                      g.rollout_correction_level, g.rollout_correction_cap)
        policy_mask = None
        if frozen.entropies is not None:
            policy_mask = high_entropy_mask(frozen.entropies[j], b.completion_mask, frozen.entropy_floor)
        loss, st = policy_loss(
            logp, old, sb.advantages[b.index], b.completion_mask, loss_type=g.loss_type, eps_low=g.eps_low,
            eps_high=g.eps_high, beta=g.beta, ref_logp=frozen.ref_logps[j] if frozen.ref_logps else None,
            norm=sb.norm, kl_estimator=g.kl_estimator, sapo_tau=(g.sapo_tau_pos, g.sapo_tau_neg),
            policy_mask=policy_mask, is_weights=weights, entropy=entropy if g.entropy_coef else None,
            entropy_coef=g.entropy_coef)
        loss.backward()
        if update == g.mu - 1:  # report the last update's view
            for key, value in (("loss", loss.item()), ("kl", st["kl"] * st["tokens"]),
                               ("clip_fraction", st["clip_fraction"] * st["tokens"]), ("tokens", st["tokens"])):
                sums[key] = sums.get(key, 0.0) + value
        if update == 0:
            sums["entropy"] = sums.get("entropy", 0.0) + float((entropy.detach() * b.completion_mask).sum())
            if weights is not None:
                sums["is_weight"] = sums.get("is_weight", 0.0) + float((weights * b.completion_mask).sum())

    def train(self, sb: StepBatch) -> dict[str, float]:
        """`mu` optimizer updates on this step's batch; the step's training statistics."""
        self.step, g = sb, self.g
        frozen = self._frozen()
        grad_norm, count = 0.0, len(sb.batches)
        for update in range(g.mu):
            self.optimizer.zero_grad(set_to_none=True)
            for j, b in enumerate(sb.batches):
                with dist.no_sync(self.model, skip=j < count - 1):  # gradients cross ranks once per update
                    self._micro_batch(j, b, update, frozen)
            params = [p for p in self.policy.model.parameters() if p.grad is not None]
            if params:
                grad_norm = dist.grad_norm_value(torch.nn.utils.clip_grad_norm_(params, g.max_grad_norm))
            self.optimizer.step()
            self.scheduler.step()
        return step_stats(frozen.sums, grad_norm, sb.measured, corrected=g.rollout_correction != "none")


def step_stats(sums: dict[str, float], grad_norm: float, measured: bool, corrected: bool) -> dict[str, float]:
    """Per-rank sums -> the step's statistics, as on one process (sums and maxima across ranks)."""
    keys = ("loss", "kl", "clip_fraction", "entropy", "tokens", "is_weight", "mm_abs_diff", "mm_k3", "mm_tokens")
    total = dict(zip(keys, dist.all_reduce_sum([sums.get(k, 0.0) for k in keys])))
    tokens = max(total["tokens"], 1.0)
    stats = {"loss": total["loss"], "kl": total["kl"] / tokens, "clip_fraction": total["clip_fraction"] / tokens,
             "entropy": total["entropy"] / tokens, "grad_norm": grad_norm}
    if measured:  # every rank measured (the engine gave log-probs): the same branch on all of them
        seen = max(total["mm_tokens"], 1.0)
        stats.update({"mismatch/abs_logp_diff": total["mm_abs_diff"] / seen, "mismatch/kl_k3": total["mm_k3"] / seen,
                      "mismatch/max_ratio": dist.all_reduce_max([sums.get("mm_max_ratio", 0.0)])[0]})
    if corrected:
        stats["mismatch/is_weight_mean"] = total["is_weight"] / max(total["mm_tokens"], 1.0)
    return stats
