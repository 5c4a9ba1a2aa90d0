"""The R1-Zero loop, top to bottom as in the paper's algorithm: sample G per prompt, score with rules,
group-normalise, take mu clipped policy-gradient steps; log, evaluate and checkpoint along the way."""
from __future__ import annotations

import copy
import hashlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from r1lab import dist
from r1lab.config import to_yaml
from r1lab.data import Row, load_task
from r1lab.data.prompts import full_completion, render
from r1lab.models import load_model, load_tokenizer, load_trainable
from r1lab.optim import make_optimizer
from r1lab.rewards import get_reward, score_batch
from r1lab.rl.batch import group_micro_batches, micro_batches, score_groups, score_sequences
from r1lab.rl.config import ZeroConfig
from r1lab.rl.grpo import LossNormalizers, group_advantages, policy_loss
from r1lab.rl.heldout import evaluate_heldout
from r1lab.rollout import SamplingParams
from r1lab.rollout.factory import make_engine
from r1lab.runs import RunDir, plot_metrics, rng_state, set_rng_state

# Always measured, whatever the weights: the numbers people compare across runs.
DIAGNOSTIC_REWARDS = ("accuracy", "accuracy_lenient", "format")


def sample_seed(seed: int, step: int, prompt_index: int, sample: int) -> int:
    """One seed per (run, step, prompt, sample): completions do not depend on batch layout or ranks."""
    digest = hashlib.blake2b(f"{seed}/{step}/{prompt_index}/{sample}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def prompt_indices(num_rows: int, seed: int, start: int, count: int) -> list[int]:
    """Rows for global prompt positions [start, start + count): a fresh seeded permutation each epoch."""
    out, cache = [], {}
    for pos in range(start, start + count):
        epoch, offset = divmod(pos, num_rows)
        if epoch not in cache:
            order = list(range(num_rows))
            random.Random(f"{seed}/epoch{epoch}").shuffle(order)
            cache[epoch] = order
        out.append(cache[epoch][offset])
    return out


@dataclass
class Policy:
    model: torch.nn.Module
    tokenizer: object
    ref_model: torch.nn.Module | None = None  # only when beta > 0 and not LoRA
    lora: bool = False

    def reference_logprobs(self, score, batch, temperature):
        with torch.no_grad():
            if self.lora:
                with self.model.disable_adapter():
                    return score(self.model, batch, temperature)[0]
            return score(self.ref_model, batch, temperature)[0]


def build_policy(cfg: ZeroConfig, checkpoint: Path | None = None) -> Policy:
    tokenizer = load_tokenizer(cfg.model.name)
    lora = cfg.model.lora_r > 0
    model = load_trainable(cfg.model, checkpoint)
    ref = None
    if cfg.grpo.beta > 0 and not lora:
        ref = load_model(cfg.model.name) if checkpoint is not None else copy.deepcopy(model)
        ref.requires_grad_(False).eval()
    model.train()
    return Policy(model, tokenizer, ref, lora)


@dataclass
class StepData:
    rows: list[Row]  # one per sample (each prompt's row repeated G times)
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    texts: list[str]  # prefill + generated text, what the rewards judge
    truncated: list[bool]
    rewards: dict[str, list[float]] = field(default_factory=dict)
    total: list[float] = field(default_factory=list)
    failures: int = 0


class GRPOTrainer:
    def __init__(self, cfg: ZeroConfig, policy: Policy, task_rows: list[Row], test_rows: list[Row], run: RunDir):
        self.cfg, self.policy, self.run = cfg, policy, run
        self.train_rows, self.test_rows = task_rows, test_rows
        g = cfg.grpo
        self.optimizer, self.scheduler = make_optimizer(policy.model, g.lr, g.weight_decay, g.lr_schedule,
                                                        g.steps * g.mu, g.warmup_steps * g.mu)
        self.engine = make_engine(cfg.engine, policy.model, policy.tokenizer)
        self.sampling = SamplingParams(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p,
                                       logprobs=False)
        self.reward_weights = {**{n: 0.0 for n in DIAGNOSTIC_REWARDS}, **cfg.rewards}
        self.step = 0
        self._prompt_cache: dict[str, list[int]] = {}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"step": self.step, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": rng_state(),
                "prompts_consumed": self.step * self.cfg.grpo.prompts_per_step}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])

    # ------------------------------------------------------------------ one step
    def encode(self, question: str) -> list[int]:
        if question not in self._prompt_cache:
            text = render(question, self.cfg.prompt, self.policy.tokenizer)
            self._prompt_cache[question] = self.policy.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._prompt_cache[question]

    def rollout(self, step: int) -> StepData:
        g = self.cfg.grpo
        first = (step - 1) * g.prompts_per_step
        picks = prompt_indices(len(self.train_rows), g.seed, first, g.prompts_per_step)
        mine = [(first + j, picks[j]) for j in range(g.prompts_per_step) if j % dist.world_size() == dist.rank()]
        rows, prompts, seeds = [], [], []
        for global_index, row_index in mine:
            row = self.train_rows[row_index]
            ids = self.encode(row["question"])
            for k in range(g.group_size):
                rows.append(row)
                prompts.append(ids)
                seeds.append(sample_seed(g.seed, step, global_index, k))
        completions = self.engine.generate(prompts, self.sampling, seeds)
        return StepData(rows, prompts, [c.token_ids for c in completions],
                        [full_completion(c.text, self.cfg.prompt) for c in completions],
                        [c.truncated for c in completions])

    def score(self, data: StepData) -> None:
        batch = score_batch(data.texts, data.rows, self.reward_weights)
        data.rewards = batch.per_reward
        data.total = batch.total
        data.failures = sum(batch.failures.values())

    def train_on(self, data: StepData) -> dict[str, float]:
        g, policy = self.cfg.grpo, self.policy
        advantages = group_advantages(torch.tensor(data.total), g.group_size, scale=g.scale_rewards)
        keep = list(range(len(data.rows)))
        grouped = torch.tensor(data.total).view(-1, g.group_size)
        uniform = (grouped.max(1).values == grouped.min(1).values).tolist()
        if g.drop_uniform_groups:
            keep = [i for i in keep if not uniform[i // g.group_size]]
        completions = [[] if (g.mask_truncated and data.truncated[i]) else data.completion_ids[i] for i in keep]
        stats = {"groups/uniform_fraction": float(np.mean(uniform)), "loss": 0.0, "kl": 0.0,
                 "clip_fraction": 0.0, "entropy": 0.0, "grad_norm": 0.0}
        counted = [i for i, c in zip(keep, completions) if c]
        if not counted:  # every group uniform: no signal this step, and no wasted forward passes
            return stats
        kept_prompts = [data.prompt_ids[i] for i in counted]
        kept_completions = [data.completion_ids[i] for i in counted]
        pad = policy.tokenizer.pad_token_id
        if g.share_prompt_forward:  # each prompt's forward runs once per group, not G times
            prompt_of = [i // g.group_size for i in counted]
            prompts = {k: data.prompt_ids[k * g.group_size] for k in set(prompt_of)}
            batches = group_micro_batches(prompt_of, prompts, kept_completions, pad, g.micro_batch_size)
            score = score_groups
        else:
            batches = micro_batches(kept_prompts, kept_completions, pad, g.micro_batch_size)
            score = score_sequences
        totals = dist.all_reduce_sum([len(counted), sum(len(c) for c in kept_completions)])
        norm = LossNormalizers(int(totals[0]), int(totals[1]), g.max_new_tokens)
        adv = advantages[counted]
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=g.bf16_autocast)

        old_logps = ref_logps = None
        if g.mu > 1:  # pi_old = the sampling policy, frozen before the first update
            with torch.no_grad(), autocast:
                old_logps = [score(policy.model, b, g.temperature)[0] for b in batches]
        if g.beta > 0:
            with autocast:
                ref_logps = [policy.reference_logprobs(score, b, g.temperature) for b in batches]

        sums = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "entropy": 0.0, "tokens": 0.0}
        grad_norm = 0.0
        for update in range(g.mu):
            self.optimizer.zero_grad(set_to_none=True)
            for j, b in enumerate(batches):
                with autocast:
                    logp, entropy = score(policy.model, b, g.temperature, with_entropy=update == 0)
                loss, st = policy_loss(
                    logp, old_logps[j] if old_logps else None, adv[b.index], b.completion_mask,
                    loss_type=g.loss_type, eps_low=g.eps_low, eps_high=g.eps_high, beta=g.beta,
                    ref_logp=ref_logps[j] if ref_logps else None, norm=norm)
                loss.backward()
                if update == g.mu - 1:  # report the last update's view
                    sums["loss"] += loss.item()
                    sums["kl"] += st["kl"] * st["tokens"]
                    sums["clip_fraction"] += st["clip_fraction"] * st["tokens"]
                    sums["tokens"] += st["tokens"]
                if entropy is not None:
                    sums["entropy"] += float((entropy * b.completion_mask).sum())
            params = [p for p in policy.model.parameters() if p.grad is not None]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, g.max_grad_norm)) if params else 0.0
            self.optimizer.step()
            self.scheduler.step()
        tokens = max(sums["tokens"], 1.0)
        stats.update(loss=sums["loss"], kl=sums["kl"] / tokens, clip_fraction=sums["clip_fraction"] / tokens,
                     entropy=sums["entropy"] / tokens, grad_norm=grad_norm)
        return stats

    def train_step(self) -> dict[str, float]:
        step = self.step + 1
        t0 = time.perf_counter()
        data = self.rollout(step)
        t1 = time.perf_counter()
        self.score(data)
        t2 = time.perf_counter()
        lr = self.scheduler.get_last_lr()[0]
        stats = self.train_on(data)
        t3 = time.perf_counter()
        self.step = step
        lengths = [len(c) for c in data.completion_ids]
        generated = sum(lengths)
        g = self.cfg.grpo
        grouped = torch.tensor(data.total).view(-1, g.group_size)
        metrics = {
            "reward/total": float(np.mean(data.total)),
            "reward/total_std": float(grouped.std(1).mean()) if g.group_size > 1 else 0.0,
            **{f"reward/{n}": float(np.mean(v)) for n, v in data.rewards.items() if n in self.cfg.rewards},
            "train/accuracy": float(np.mean(data.rewards["accuracy"])),
            "train/accuracy_lenient": float(np.mean(data.rewards["accuracy_lenient"])),
            "train/format": float(np.mean(data.rewards["format"])),
            "reward/failures": float(data.failures),
            "completion/length_mean": float(np.mean(lengths)),
            "completion/length_max": float(max(lengths)),
            "completion/truncated_rate": float(np.mean(data.truncated)),
            **stats,
            "lr": lr,
            "time/generate": t1 - t0, "time/score": t2 - t1, "time/train": t3 - t2, "time/step": t3 - t0,
            "tokens_per_s": generated / max(t1 - t0, 1e-9),
        }
        self._log_samples(step, data)
        return metrics

    def _log_samples(self, step: int, data: StepData) -> None:
        n = self.cfg.run.samples_per_step
        if not n:
            return
        g = self.cfg.grpo.group_size
        advantages = group_advantages(torch.tensor(data.total), g, scale=self.cfg.grpo.scale_rewards)
        picks = [i * g for i in range(len(data.rows) // g)][:n]  # the first sample of each group
        picks += [i for i in range(len(data.rows)) if i not in picks][: n - len(picks)]
        self.run.log_samples(step, [{
            "id": data.rows[i]["id"], "question": data.rows[i]["question"], "answer": data.rows[i]["answer"],
            "completion": data.texts[i], "reward": data.total[i], "advantage": float(advantages[i]),
            "rewards": {k: v[i] for k, v in data.rewards.items()},
        } for i in picks])

    def evaluate(self) -> dict[str, float]:
        cfg = self.cfg
        return evaluate_heldout(self.engine, self.policy.tokenizer, self.test_rows[: cfg.run.eval_size], cfg.prompt,
                                SamplingParams(max_new_tokens=cfg.grpo.max_new_tokens,
                                               temperature=cfg.run.eval_temperature, logprobs=False),
                                seed=cfg.grpo.seed, batch_size=cfg.run.eval_batch_size)


def train_zero(cfg: ZeroConfig, resume: bool = False, progress: bool = True) -> RunDir:
    """Run (or resume) an R1-Zero GRPO run; returns its RunDir."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    for name in cfg.rewards:
        try:
            get_reward(name)
        except KeyError as err:
            raise ValueError(f"rewards.{name}: {err.args[0]}") from None
    run = RunDir(cfg.run.output_dir, rank=dist.rank())
    checkpoint = run.latest_checkpoint() if resume else None
    if not resume and (run.latest_checkpoint() is not None or run.metrics_path.exists()):
        raise FileExistsError(f"{run.root} already holds a run; pass --resume to continue it or pick another output_dir")
    torch.manual_seed(cfg.grpo.seed)
    task = load_task(cfg.task)
    policy = build_policy(cfg, checkpoint)
    trainer = GRPOTrainer(cfg, policy, task.train, task.test, run)
    if checkpoint is not None:
        trainer.load_state_dict(run.load_state(checkpoint))
        run.truncate_after(trainer.step)
    else:
        run.truncate_after(-1)  # resuming a run killed before its first checkpoint starts it over
        run.write_text("config.yaml", to_yaml(cfg))

    from r1lab.rl.progress import TrainingProgress

    with TrainingProgress(cfg.grpo.steps, trainer.step, enabled=progress and run.is_writer) as bar:
        if trainer.step == 0 and cfg.run.eval_every:
            evaluation = trainer.evaluate()
            run.log_metrics(0, evaluation)
            bar.update(0, evaluation)
        while trainer.step < cfg.grpo.steps:
            metrics = trainer.train_step()
            step = trainer.step
            last = step == cfg.grpo.steps
            if cfg.run.eval_every and (step % cfg.run.eval_every == 0 or last):
                metrics.update(trainer.evaluate())
            run.log_metrics(step, metrics)
            if run.is_writer and cfg.run.plot_every and (step % cfg.run.plot_every == 0 or last):
                plot_metrics(run.read_metrics(), run.root / "plot.png", title=f"R1-Zero: {cfg.model.name} on {task.name}")
            if step % cfg.run.checkpoint_every == 0 or last:
                run.save_checkpoint(step, policy.model, policy.tokenizer, trainer.state_dict(), cfg.run.keep_checkpoints)
            bar.update(step, metrics)
    return run
