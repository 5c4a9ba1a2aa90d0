"""The SFT loop: each step takes batch_size samples in a seeded per-epoch order, packs this rank's share
into micro-batches, accumulates the token-mean cross-entropy over reply tokens, and takes one step.

The loss of a step is sum(token CE over targets) / (target tokens of the whole step, all ranks), so
micro-batches and ranks add up exactly to the one-batch, one-process mean and its gradient.
"""
from __future__ import annotations

import math
import time
from typing import Sequence

import torch
import torch.nn.functional as F

from r1lab import dist
from r1lab.config import to_yaml
from r1lab.data.order import epoch_order as sample_order
from r1lab.models import load_tokenizer, load_trainable
from r1lab.optim import make_optimizer
from r1lab import allocator, precision
from r1lab.precision import use_bf16_autocast
from r1lab.rl.logprobs import head_logprobs, output_head  # the chunked LM head, shared with GRPO
from r1lab.runs import RunDir, plot_metrics, rng_state, set_rng_state
from r1lab.runs.resume import open_run, removed_on_failure
from r1lab.sft.config import SFTConfig, SFTTrainConfig
from r1lab.sft.data import load_samples
from r1lab.sft.packing import IGNORE, PackedBatch, Sample, micro_batches


def total_steps(cfg: SFTTrainConfig, num_samples: int) -> int:
    return cfg.steps or max(1, math.ceil(cfg.epochs * num_samples / cfg.batch_size))


# ---------------------------------------------------------------- forward and loss
def forward_logits(model, batch: PackedBatch, keep: int | torch.Tensor = 0) -> torch.Tensor:
    """Logits (R, T or K, V); `keep` as in transformers' logits_to_keep (0 = all, or a 1-D tensor of columns)."""
    device = next(model.parameters()).device
    mask = batch.attention_mask.to(device) if batch.attention_mask is not None else None
    # use_cache=False is load-bearing: with a cache object transformers skips the packed-sequence mask
    return model(input_ids=batch.input_ids.to(device), attention_mask=mask, position_ids=batch.position_ids.to(device),
                 use_cache=False, logits_to_keep=keep).logits


def target_loss_sum(model, batch: PackedBatch, bf16: bool = False) -> torch.Tensor:
    """Sum of next-token cross-entropies over the batch's target tokens (0-dim, differentiable). The LM head
    runs chunked straight into log-probs (rl.logprobs): no (R, K, V) fp32 logits, the same numbers."""
    targets = batch.labels[:, 1:]  # (R, T-1): the token each position t is trained to predict
    columns = (targets != IGNORE).any(0).nonzero().squeeze(1)  # (K,) the LM head runs only where some row has a target
    device = next(model.parameters()).device
    picked = targets[:, columns].to(device)  # (R, K)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        if output_head(model) is None:  # e.g. a LoRA-wrapped head: the plain path
            logits = forward_logits(model, batch, columns.to(device))  # (R, K, V)
        else:
            with head_logprobs(model, picked.clamp(min=0)) as out:
                forward_logits(model, batch, columns.to(device))
            return -(out["logp"] * (picked != IGNORE)).sum()
    return F.cross_entropy(logits.float().flatten(0, 1), picked.flatten(), ignore_index=IGNORE, reduction="sum")


def accumulate_gradients(model, batches: Sequence[PackedBatch], step_targets: float, bf16: bool = False) -> float:
    """Backward over every micro-batch with the loss divided by the whole step's target count; returns this
    process's share of the step loss."""
    total = max(step_targets, 1.0)
    loss_sum = 0.0
    for batch in batches:
        if batch.num_targets == 0:
            continue
        loss = target_loss_sum(model, batch, bf16) / total
        loss.backward()
        loss_sum += loss.item()
    return loss_sum


# ---------------------------------------------------------------- the trainer
class SFTTrainer:
    def __init__(self, cfg: SFTConfig, model, tokenizer, samples: list[Sample]):
        self.cfg, self.model, self.tokenizer, self.samples = cfg, model, tokenizer, samples
        allocator.keep_freed_memory()  # each step reuses the last one's memory, no page faults
        t = cfg.train
        self.total_steps = total_steps(t, len(samples))
        self.optimizer, self.scheduler = make_optimizer(model, t.lr, t.weight_decay, t.lr_schedule,
                                                        self.total_steps, t.warmup_steps)
        self.bf16_autocast = use_bf16_autocast(t.bf16_autocast, next(model.parameters()).device)
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])

    def my_samples(self, step: int) -> list[Sample]:
        """This rank's share of the step: sample j of the step goes to rank j % world_size."""
        t = self.cfg.train
        picks = sample_order(len(self.samples), t.seed, (step - 1) * t.batch_size, t.batch_size)
        return [self.samples[i] for j, i in enumerate(picks) if j % dist.world_size() == dist.rank()]

    def train_step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        t = self.cfg.train
        step = self.step + 1
        mine = self.my_samples(step)
        batches = micro_batches(mine, t.max_seq_len, t.micro_batch_tokens, self.tokenizer.pad_token_id, t.packing)
        targets, tokens, slots, truncated = dist.all_reduce_sum([
            sum(b.num_targets for b in batches), sum(b.num_tokens for b in batches),
            sum(b.input_ids.numel() for b in batches), sum(s.truncated for s in mine)])
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.zero_grad(set_to_none=True)
        loss = accumulate_gradients(self.model, batches, targets, self.bf16_autocast)
        dist.sync_gradients(self.model)
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = t.max_grad_norm if t.max_grad_norm > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if params else 0.0
        self.optimizer.step()
        self.scheduler.step()
        (loss,) = dist.all_reduce_sum([loss])
        self.step = step
        elapsed = time.perf_counter() - t0
        return {
            "loss": loss, "target_tokens": targets, "tokens": tokens, "tokens_per_s": tokens / max(elapsed, 1e-9),
            "pack_fill": tokens / max(slots, 1.0),  # real tokens / padded tensor slots
            "truncated_samples": truncated, "lr": lr, "grad_norm": grad_norm,
            "epoch": step * t.batch_size / len(self.samples), "time/step": elapsed,
        }


def check_packing_support() -> None:
    """Packed rows rely on transformers building the block-diagonal mask itself (see sft/packing.py)."""
    from transformers import masking_utils

    if not hasattr(masking_utils, "find_packed_sequence_indices"):
        raise ValueError("train.packing needs a transformers release that masks packed sequences from position ids "
                         "(masking_utils.find_packed_sequence_indices): upgrade transformers or set train.packing=false")


def _summary(m: dict[str, float]) -> str:
    return (f"loss {m['loss']:.3f}  lr {m['lr']:.1e}  {m['tokens_per_s']:.0f} tok/s  "
            f"epoch {m['epoch']:.2f}  {m['time/step']:.1f}s/step")


def train_sft(cfg: SFTConfig, resume: bool = False, progress: bool = True) -> RunDir:
    """Run (or resume) supervised fine-tuning; returns its RunDir. Under torchrun every rank trains on its
    share of each step's samples and the summed gradients are all-reduced once per step (DDP's result,
    without overlapping communication with the backward pass); rank 0 writes the run directory."""
    dist.init_from_env()
    precision.agree_across_ranks()  # "auto" precision: rank 0's measurement for every rank
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.train.packing:
        check_packing_support()
    with removed_on_failure(cfg.run.output_dir, is_writer=dist.rank() == 0):  # no empty run dir if setup fails
        run = RunDir(cfg.run.output_dir, rank=dist.rank())
        checkpoint = open_run(run, cfg, resume)
        tokenizer = load_tokenizer(cfg.model.name)
        samples = load_samples(cfg.data, cfg.prompt, tokenizer, cfg.train.max_seq_len)
        torch.manual_seed(cfg.train.seed)  # LoRA init and dropout: the same on every rank and every rerun
        model = load_trainable(cfg.model, checkpoint)
        model.train()
        trainer = SFTTrainer(cfg, model, tokenizer, samples)
        if checkpoint is not None:
            trainer.load_state_dict(run.load_state(checkpoint))
            run.truncate_after(trainer.step)
        else:
            run.truncate_after(-1)  # resuming a run killed before its first checkpoint starts it over
            run.write_text("config.yaml", to_yaml(cfg))

    from r1lab.runs.progress import TrainingProgress

    r = cfg.run
    with TrainingProgress(trainer.total_steps, trainer.step, enabled=progress and run.is_writer, label="SFT",
                          describe=_summary) as bar:
        while trainer.step < trainer.total_steps:
            metrics = trainer.train_step()
            step = trainer.step
            last = step == trainer.total_steps
            run.log_metrics(step, metrics)
            if run.is_writer and r.plot_every and (step % r.plot_every == 0 or last):
                plot_metrics(run.read_metrics(), run.root / "plot.png", title=f"SFT: {cfg.model.name} on {cfg.data.path}")
            if step % r.checkpoint_every == 0 or last:
                run.save_checkpoint(step, model, tokenizer, trainer.state_dict(), r.keep_checkpoints)
            bar.update(step, metrics)
    return run
