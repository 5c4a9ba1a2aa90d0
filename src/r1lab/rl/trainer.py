"""The R1-Zero loop, top to bottom as in the paper's algorithm: sample G per prompt, score with rules,
group-normalise, take mu clipped policy-gradient steps; log, evaluate and checkpoint along the way."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from r1lab import dist
from r1lab.config import config_dir, to_yaml
from r1lab.data import Row, load_task
from r1lab.data.order import epoch_order as prompt_indices
from r1lab.data.prompts import full_completion, render
from r1lab.eval.aha import aha_step_metrics
from r1lab.models import load_model, load_tokenizer, load_trainable
from r1lab.optim import make_optimizer
from r1lab.rewards import applicable_mean, load_rewards, reward_metrics, score_batch
from r1lab.rl.batch import group_micro_batches, micro_batches, pack, pack_groups, score_groups, score_sequences
from r1lab.rl.config import ZeroConfig
from r1lab.rl.grpo import LossNormalizers, group_advantages, policy_loss
from r1lab.rl.heldout import heldout_records, summarize_heldout
from r1lab.rollout import SamplingParams
from r1lab import precision
from r1lab.precision import use_bf16_autocast
from r1lab.rollout.factory import make_engine
from r1lab.runs import RunDir, plot_metrics, rng_state, set_rng_state
from r1lab.runs.resume import open_run, removed_on_failure

# Always measured, whatever the weights: the numbers people compare across runs.
DIAGNOSTIC_REWARDS = ("accuracy", "accuracy_lenient", "format")


def sample_seed(seed: int, step: int, prompt_index: int, sample: int) -> int:
    """One seed per (run, step, prompt, sample): completions do not depend on batch layout or ranks."""
    digest = hashlib.blake2b(f"{seed}/{step}/{prompt_index}/{sample}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def to_device(batch, device: torch.device):
    """A packed micro-batch with its tensors on `device` (the batch itself on the CPU)."""
    if device.type == "cpu":
        return batch
    return dataclasses.replace(batch, **{f.name: getattr(batch, f.name).to(device) for f in dataclasses.fields(batch)
                                         if isinstance(getattr(batch, f.name), torch.Tensor)})


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
    model = load_trainable(cfg.model, checkpoint).to(dist.device())
    ref = None
    if cfg.grpo.beta > 0 and not lora:
        ref = load_model(cfg.model.name, device=dist.device()) if checkpoint is not None else copy.deepcopy(model)
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
    failures: dict[str, int] = field(default_factory=dict)  # failed samples per reward
    positions: list[int] = field(default_factory=list)  # place in the global batch: prompt j, sample k -> j*G + k


class GRPOTrainer:
    def __init__(self, cfg: ZeroConfig, policy: Policy, task_rows: list[Row], test_rows: list[Row], run: RunDir):
        self.cfg, self.policy, self.run = cfg, policy, run
        self.train_rows, self.test_rows = task_rows, test_rows
        g = cfg.grpo
        self.device = dist.device()
        self.bf16_autocast = use_bf16_autocast(g.bf16_autocast, self.device)
        # Sampling, evaluation and checkpoints read a plain model with full weights: the policy itself (DDP
        # shares its parameters), or under FSDP a replica refreshed after every optimizer step.
        self.replica = copy.deepcopy(policy.model) if cfg.fsdp and dist.is_distributed() else None
        self.train_model = dist.wrap_model(policy.model, fsdp=cfg.fsdp)  # forwards/backwards that train
        self.optimizer, self.scheduler = make_optimizer(policy.model, g.lr, g.weight_decay, g.lr_schedule,
                                                        g.steps * g.mu, g.warmup_steps * g.mu)
        self.engine = make_engine(cfg.engine, self.sampling_model, policy.tokenizer, **cfg.engine_options)
        self.sampling = SamplingParams(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p,
                                       logprobs=False)
        self.reward_weights = {**{n: 0.0 for n in DIAGNOSTIC_REWARDS}, **cfg.rewards}
        self.step = 0
        self.train_seconds = 0.0  # wall time of training steps (evaluations excluded), across resumes
        self._prompt_cache: dict[str, list[int]] = {}

    @property
    def sampling_model(self) -> torch.nn.Module:
        return self.replica if self.replica is not None else self.policy.model

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        sharded = dist.is_sharded(self.train_model)  # FSDP: the optimizer is saved in shards (save_checkpoint)
        return {"step": self.step, "optimizer": None if sharded else self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": rng_state(),
                "prompts_consumed": self.step * self.cfg.grpo.prompts_per_step, "train_seconds": self.train_seconds}

    def load_state_dict(self, state: dict, checkpoint: Path | None = None) -> None:
        self.step = state["step"]
        self.train_seconds = state.get("train_seconds", 0.0)
        if state["optimizer"] is None:  # saved by an FSDP run
            dist.load_sharded_optimizer(self.train_model, self.optimizer, Path(checkpoint) / "optimizer")
        elif dist.is_sharded(self.train_model):
            raise ValueError(f"{checkpoint}: saved without fsdp; resume it without --fsdp")
        else:
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
        # Ranks take whole prompts round-robin: each group's G samples (and its advantages) stay on one rank.
        mine = [j for j in range(g.prompts_per_step) if j % dist.world_size() == dist.rank()]
        rows, prompts, seeds, positions = [], [], [], []
        for j in mine:
            row = self.train_rows[picks[j]]
            ids = self.encode(row["question"])
            for k in range(g.group_size):
                rows.append(row)
                prompts.append(ids)
                seeds.append(sample_seed(g.seed, step, first + j, k))
                positions.append(j * g.group_size + k)
        completions = self.engine.generate(prompts, self.sampling, seeds)
        return StepData(rows, prompts, [c.token_ids for c in completions],
                        [full_completion(c.text, self.cfg.prompt) for c in completions],
                        [c.truncated for c in completions], positions=positions)

    def score(self, data: StepData) -> None:
        batch = score_batch(data.texts, data.rows, self.reward_weights, completion_ids=data.completion_ids,
                            on_error=self.cfg.reward_errors, base_dir=config_dir(self.cfg))
        data.rewards = batch.per_reward
        data.total = batch.total
        data.failures = batch.failures

    def train_on(self, data: StepData) -> dict[str, float]:
        g, policy = self.cfg.grpo, self.policy
        advantages = group_advantages(torch.tensor(data.total), g.group_size, scale=g.scale_rewards)
        keep = list(range(len(data.rows)))
        if g.drop_uniform_groups:
            grouped = torch.tensor(data.total).view(-1, g.group_size)
            uniform = (grouped.max(1).values == grouped.min(1).values).tolist()
            keep = [i for i in keep if not uniform[i // g.group_size]]
        completions = [[] if (g.mask_truncated and data.truncated[i]) else data.completion_ids[i] for i in keep]
        stats = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "entropy": 0.0, "grad_norm": 0.0}
        counted = [i for i, c in zip(keep, completions) if c]
        totals = dist.all_reduce_sum([len(counted), sum(len(data.completion_ids[i]) for i in counted)])
        if not totals[0]:  # every group uniform on every rank: no signal this step, and no wasted forward passes
            return stats
        norm = LossNormalizers(int(totals[0]), int(totals[1]), g.max_new_tokens)
        batches, score = self._micro_batches(data, counted)
        # Every rank runs as many micro-batches as the busiest one, padding with empty ones (None): FSDP
        # gathers weights in every forward, DDP reduces gradients in the last backward of each update.
        count = int(dist.all_reduce_max([len(batches)])[0])
        batches += [None] * (count - len(batches))
        filler = self._filler_batch(score)
        adv = advantages[counted].to(self.device)
        model = self.train_model
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16_autocast)

        old_logps = ref_logps = None
        if g.mu > 1:  # pi_old = the sampling policy, frozen before the first update
            with torch.no_grad(), autocast:
                old_logps = [score(model, b or filler, g.temperature)[0] for b in batches]
        if g.beta > 0:
            with autocast:
                ref_logps = [policy.reference_logprobs(score, b, g.temperature) if b else None for b in batches]

        sums = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "entropy": 0.0, "tokens": 0.0}
        grad_norm = 0.0
        for update in range(g.mu):
            self.optimizer.zero_grad(set_to_none=True)
            for j, b in enumerate(batches):
                with dist.no_sync(model, skip=j < count - 1):  # gradients cross ranks once per update
                    with autocast:
                        logp, entropy = score(model, b or filler, g.temperature,
                                              with_entropy=update == 0 and b is not None)
                    if b is None:
                        (logp * 0.0).sum().backward()  # joins the collectives, adds nothing
                        continue
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
            if params:
                grad_norm = dist.grad_norm_value(torch.nn.utils.clip_grad_norm_(params, g.max_grad_norm))
            self.optimizer.step()
            self.scheduler.step()
        self._weights_changed()
        sums = dict(zip(sums, dist.all_reduce_sum(list(sums.values()))))  # each rank held a share of the batch
        tokens = max(sums["tokens"], 1.0)
        stats.update(loss=sums["loss"], kl=sums["kl"] / tokens, clip_fraction=sums["clip_fraction"] / tokens,
                     entropy=sums["entropy"] / tokens, grad_norm=grad_norm)
        return stats

    def _micro_batches(self, data: StepData, counted: list[int]) -> tuple[list, object]:
        """This rank's counted samples packed for scoring (on the training device), and the scorer to use."""
        g, pad = self.cfg.grpo, self.policy.tokenizer.pad_token_id
        completions = [data.completion_ids[i] for i in counted]
        if g.share_prompt_forward:  # each prompt's forward runs once per group, not G times
            prompt_of = [i // g.group_size for i in counted]
            prompts = {k: data.prompt_ids[k * g.group_size] for k in set(prompt_of)}
            batches = group_micro_batches(prompt_of, prompts, completions, pad, g.micro_batch_size)
            score = score_groups
        else:
            batches = micro_batches([data.prompt_ids[i] for i in counted], completions, pad, g.micro_batch_size)
            score = score_sequences
        return [to_device(b, self.device) for b in batches], score

    def _filler_batch(self, score):
        """One pad token of prompt and of completion, masked out: what a rank with fewer micro-batches runs."""
        pad = self.policy.tokenizer.pad_token_id
        b = pack_groups([[pad]], [[pad]], [0], pad, []) if score is score_groups else pack([[pad]], [[pad]], pad, [])
        b.completion_mask.zero_()
        return to_device(b, self.device)

    def _weights_changed(self) -> None:
        """After the optimizer steps: bring the sampling copies up to date (FSDP replica, vLLM's weights)."""
        if self.replica is not None:
            self.replica.load_state_dict(dist.full_state_dict(self.train_model))
        refresh = getattr(self.engine, "refresh_weights", None)
        if refresh is not None:
            refresh()

    def _whole_batch(self, data: StepData) -> dict[str, list]:
        """The step's per-sample numbers from every rank, in global sample order, so that metrics are
        computed exactly as on one process; `failures` is the global count."""
        columns = {"total": data.total, "length": [len(c) for c in data.completion_ids],
                   "truncated": data.truncated, "text": data.texts, "row": data.rows,
                   **{f"reward/{n}": v for n, v in data.rewards.items()}}
        parts = dist.all_gather_objects((data.positions, columns, data.failures))
        order = sorted((p, r, i) for r, (positions, _, _) in enumerate(parts) for i, p in enumerate(positions))
        merged: dict[str, list] = {k: [parts[r][1][k][i] for _, r, i in order] for k in columns}
        merged["failures"] = {n: sum(part[2].get(n, 0) for part in parts) for n in data.failures}
        return merged

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
        every = self._whole_batch(data)
        lengths = every["length"]
        generated = sum(lengths)
        g = self.cfg.grpo
        grouped = torch.tensor(every["total"]).view(-1, g.group_size)
        uniform = (grouped.max(1).values == grouped.min(1).values).tolist()
        t_generate, t_score, t_train, t_step = dist.all_reduce_max([t1 - t0, t2 - t1, t3 - t2, t3 - t0])  # slowest rank
        metrics = {
            "reward/total": float(np.mean(every["total"])),
            "reward/total_std": float(grouped.std(1).mean()) if g.group_size > 1 else 0.0,
            **reward_metrics({n: every[f"reward/{n}"] for n in self.cfg.rewards}, every["failures"]),
            "train/accuracy": applicable_mean(every["reward/accuracy"]),
            "train/accuracy_lenient": applicable_mean(every["reward/accuracy_lenient"]),
            "train/format": applicable_mean(every["reward/format"]),
            "reward/failures": float(sum(every["failures"].values())),
            "completion/length_mean": float(np.mean(lengths)),
            "completion/length_p90": float(np.percentile(lengths, 90)),
            "completion/length_max": float(max(lengths)),
            "completion/truncated_rate": float(np.mean(every["truncated"])),
            "groups/uniform_fraction": float(np.mean(uniform)),
            **stats,
            "lr": lr,
            "time/generate": t_generate, "time/score": t_score, "time/train": t_train, "time/step": t_step,
            "tokens_per_s": generated / max(t_generate, 1e-9),
        }
        metrics.update(self._aha_lens(step, every))
        self._log_samples(step, data)
        return metrics

    def _aha_lens(self, step: int, every: dict[str, list]) -> dict[str, float]:
        """Reflection-phrase rates and their link to correctness; "aha" candidates go to aha.jsonl."""
        metrics, candidates = aha_step_metrics(every["text"], [(a or 0.0) >= 1.0 for a in every["reward/accuracy"]])
        self.run.log_records("aha.jsonl", step, [{
            "id": every["row"][i]["id"], "question": every["row"][i]["question"], "answer": every["row"][i]["answer"],
            "completion": every["text"][i], "reward": every["total"][i]} for i in candidates])
        return metrics

    def _log_samples(self, step: int, data: StepData) -> None:
        n = self.cfg.run.samples_per_step
        if not n:
            return
        g = self.cfg.grpo.group_size
        size = self.cfg.grpo.prompts_per_step * g  # the global batch
        picks = [i * g for i in range(size // g)][:n]  # the first sample of each group
        picks += [i for i in range(size) if i not in picks][: n - len(picks)]
        advantages = group_advantages(torch.tensor(data.total), g, scale=self.cfg.grpo.scale_rewards)
        mine = [(picks.index(p), {
            "id": data.rows[i]["id"], "question": data.rows[i]["question"], "answer": data.rows[i]["answer"],
            "completion": data.texts[i], "reward": data.total[i], "advantage": float(advantages[i]),
            "rewards": {k: v[i] for k, v in data.rewards.items()},
        }) for i, p in enumerate(data.positions) if p in picks]
        records = sorted((r for part in dist.all_gather_objects(mine) for r in part), key=lambda r: r[0])
        self.run.log_samples(step, [record for _, record in records])

    def evaluate(self) -> dict[str, float]:
        """Held-out accuracy. Row i is sampled on rank i % world_size with its own seed and the scores are
        gathered, so the result equals one process's (with a per-row-seeded engine: native, vllm)."""
        cfg = self.cfg
        rows = self.test_rows[: cfg.run.eval_size]
        params = SamplingParams(max_new_tokens=cfg.grpo.max_new_tokens, temperature=cfg.run.eval_temperature,
                                logprobs=False)
        mine = heldout_records(self.engine, self.policy.tokenizer, rows, cfg.prompt, params, seed=cfg.grpo.seed,
                               batch_size=cfg.run.eval_batch_size,
                               indices=list(range(dist.rank(), len(rows), dist.world_size())))
        return summarize_heldout(sorted((r for part in dist.all_gather_objects(mine) for r in part),
                                        key=lambda r: r["index"]))

    def save_checkpoint(self, step: int) -> None:
        """Rank 0 writes full weights (plain transformers safetensors), tokenizer and trainer state. Under FSDP
        every rank first writes its optimizer shard, moved into the checkpoint before it is renamed into place."""
        run, extra = self.run, None
        if dist.is_sharded(self.train_model):
            staging = run.checkpoints / f".optimizer-{step:06d}"
            if run.is_writer:
                shutil.rmtree(staging, ignore_errors=True)  # left by a run killed mid-save
            dist.barrier()
            dist.save_sharded_optimizer(self.train_model, self.optimizer, staging)
            dist.barrier()

            def extra(folder: Path) -> None:
                os.replace(staging, folder / "optimizer")

        run.save_checkpoint(step, self.sampling_model, self.policy.tokenizer, self.state_dict(),
                            self.cfg.run.keep_checkpoints, extra=extra)
        dist.barrier()  # no rank runs ahead of a checkpoint that is not on disk yet


def train_zero(cfg: ZeroConfig, resume: bool = False, progress: bool = True) -> RunDir:
    """Run (or resume) an R1-Zero GRPO run; returns its RunDir.

    Under `torchrun` / `accelerate launch` every rank calls this: it joins the process group, each rank
    samples and trains on its share of the prompts, and rank 0 writes the run directory.
    """
    dist.init_from_env()
    precision.agree_across_ranks()  # "auto" precision: rank 0's measurement for every rank
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    load_rewards(cfg.rewards, config_dir(cfg))  # resolved before anything is written: a bad reference leaves no run
    task = load_task(cfg.task)
    if cfg.grpo.prompts_per_step < dist.world_size():
        raise ValueError(f"grpo.prompts_per_step={cfg.grpo.prompts_per_step} must be at least the number of ranks "
                         f"({dist.world_size()}): each rank samples whole groups")
    if cfg.fsdp and cfg.model.lora_r > 0:
        raise ValueError("fsdp: not supported with LoRA (model.lora_r > 0); its few trainable weights suit DDP")
    with removed_on_failure(cfg.run.output_dir, is_writer=dist.rank() == 0):  # no empty run dir if setup fails
        task.require_train(cfg.task)
        run = RunDir(cfg.run.output_dir, rank=dist.rank(), tensorboard=cfg.run.tensorboard)
        checkpoint = open_run(run, cfg, resume)
        torch.manual_seed(cfg.grpo.seed)
        policy = build_policy(cfg, checkpoint)
        trainer = GRPOTrainer(cfg, policy, task.train, task.test, run)
        if checkpoint is not None:
            trainer.load_state_dict(run.load_state(checkpoint), checkpoint)
            run.truncate_after(trainer.step)
        else:
            run.truncate_after(-1)  # resuming a run killed before its first checkpoint starts it over
            run.write_text("config.yaml", to_yaml(cfg))

    from r1lab.runs.progress import TrainingProgress

    with TrainingProgress(cfg.grpo.steps, trainer.step, enabled=progress and run.is_writer) as bar:
        if trainer.step == 0 and cfg.run.eval_every:
            evaluation = trainer.evaluate()
            run.log_metrics(0, evaluation)
            bar.update(0, evaluation)
        budget = cfg.run.time_budget_s
        used_up = bool(budget and trainer.train_seconds >= budget)  # a resumed run that already spent its budget
        while trainer.step < cfg.grpo.steps and not used_up:
            started = time.perf_counter()
            metrics = trainer.train_step()
            step = trainer.step
            elapsed = trainer.train_seconds + time.perf_counter() - started
            if budget:  # ranks must agree on the last step: it evaluates and checkpoints (collectives)
                elapsed = dist.all_reduce_max([elapsed])[0]
            last = step == cfg.grpo.steps or bool(budget and elapsed >= budget)
            if cfg.run.eval_every and (step % cfg.run.eval_every == 0 or last):
                eval_started = time.perf_counter()
                metrics.update(trainer.evaluate())
                started += time.perf_counter() - eval_started
            run.log_metrics(step, metrics)
            if run.is_writer and cfg.run.plot_every and (step % cfg.run.plot_every == 0 or last):
                plot_metrics(run.read_metrics(), run.root / "plot.png", title=f"R1-Zero: {cfg.model.name} on {task.name}")
            if step % cfg.run.checkpoint_every == 0 or last:
                trainer.train_seconds += time.perf_counter() - started
                started = time.perf_counter()
                trainer.save_checkpoint(step)
            trainer.train_seconds += time.perf_counter() - started
            if budget:
                trainer.train_seconds = dist.all_reduce_max([trainer.train_seconds])[0]  # one stopping decision
            bar.update(step, metrics)
            if last:  # the step count or the time budget is used up, and that step is checkpointed
                break
    run.close()
    return run
