"""The R1-Zero loop, top to bottom as in the paper's algorithm: sample G per prompt, score with rules,
group-normalise, take mu clipped policy-gradient steps; log, evaluate and checkpoint along the way."""
from __future__ import annotations

import copy
import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from r1lab import allocator, dist, precision
from r1lab.config import config_dir, to_yaml
from r1lab.data import Row, Task, load_task
from r1lab.data.order import epoch_order as prompt_indices
from r1lab.data.prompts import full_completion, render
from r1lab.eval.aha import aha_step_metrics
from r1lab.models import load_model, load_tokenizer, load_trainable
from r1lab.optim import make_optimizer
from r1lab.precision import use_bf16_autocast
from r1lab.rewards import load_rewards, score_batch
from r1lab.rl.advantages import compute_advantages
from r1lab.rl.config import ZeroConfig
from r1lab.rl.heldout import heldout_records, summarize_heldout
from r1lab.rl.metrics import (DIAGNOSTIC_REWARDS, completion_metrics, reward_metrics, sample_picks, timing_metrics,
                              uniform_groups)
from r1lab.rl.update import EMPTY_STATS, Learner, prepare_step
from r1lab.rollout import SamplingParams
from r1lab.rollout.factory import make_engine
from r1lab.runs import RunDir, plot_metrics, rng_state, set_rng_state
from r1lab.runs.resume import open_run, removed_on_failure


def sample_seed(seed: int, step: int, prompt_index: int, sample: int) -> int:
    """One seed per (run, step, prompt, sample): completions do not depend on batch layout or ranks."""
    digest = hashlib.blake2b(f"{seed}/{step}/{prompt_index}/{sample}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


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
    sampler_logprobs: list[list[float]] | None = None  # the engine's per-token log-probs (None: not kept)
    advantages: list[float] = field(default_factory=list)  # from the whole batch's rewards, once per step


class GRPOTrainer:
    def __init__(self, cfg: ZeroConfig, policy: Policy, task_rows: list[Row], test_rows: list[Row], run: RunDir):
        self.cfg, self.policy, self.run = cfg, policy, run
        allocator.keep_freed_memory()  # each step reuses the last one's memory, no page faults
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
                                       logprobs=g.log_mismatch).ending_at(cfg.prompt.stops)
        self.learner = Learner(self.train_model, policy, self.optimizer, self.scheduler, g, self.device,
                               self.bf16_autocast)
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
        logprobs = [c.logprobs for c in completions] if g.log_mismatch else None
        if logprobs is not None and any(lp is None for lp in logprobs):
            if g.rollout_correction != "none":
                raise ValueError(f"grpo.rollout_correction={g.rollout_correction}: engine {self.cfg.engine!r} returns "
                                 "no sampling log-probs; use engine native or hf, or rollout_correction none")
            logprobs = None  # this engine does not report them: no mismatch metrics
        return StepData(rows, prompts, [c.token_ids for c in completions],
                        [full_completion(c.text, self.cfg.prompt) for c in completions],
                        [c.truncated for c in completions], positions=positions, sampler_logprobs=logprobs)

    def score(self, data: StepData) -> None:
        batch = score_batch(data.texts, data.rows, self.reward_weights, completion_ids=data.completion_ids,
                            on_error=self.cfg.reward_errors, base_dir=config_dir(self.cfg))
        data.rewards = batch.per_reward
        data.total = batch.total
        data.failures = batch.failures

    def train_on(self, data: StepData) -> dict[str, float]:
        """The policy update on this rank's samples (rl.update); `data.advantages` are already computed."""
        g = self.cfg.grpo
        keep = list(range(len(data.rows)))
        if g.drop_uniform_groups:
            uniform = uniform_groups(data.total, g.group_size)
            keep = [i for i in keep if not uniform[i // g.group_size]]
        counted = [i for i in keep if data.completion_ids[i] and not (g.mask_truncated and data.truncated[i])]
        batch = prepare_step(data.completion_ids, data.prompt_ids, counted, torch.tensor(data.advantages),
                             data.sampler_logprobs, g, self.policy.tokenizer.pad_token_id, self.device)
        if batch is None:  # every group uniform on every rank: no signal this step, and no wasted forward passes
            return dict(EMPTY_STATS)
        stats = self.learner.train(batch)
        self._weights_changed()
        return stats

    def _weights_changed(self) -> None:
        """After the optimizer steps: bring the sampling copies up to date (FSDP replica, vLLM's weights)."""
        if self.replica is not None:
            self.replica.load_state_dict(dist.full_state_dict(self.train_model))
        refresh = getattr(self.engine, "refresh_weights", None)
        if refresh is not None:
            refresh()

    def _whole_batch(self, data: StepData) -> dict[str, list]:
        """The step's per-sample numbers from every rank, in global sample order; `failures` per reward, summed over ranks."""
        columns = {"total": data.total, "length": [len(c) for c in data.completion_ids],
                   "truncated": data.truncated, "text": data.texts, "row": data.rows,
                   **{f"reward/{n}": v for n, v in data.rewards.items()}}
        merged, failures = dist.gather_columns(data.positions, columns, data.failures)
        merged["failures"] = {n: sum(part.get(n, 0) for part in failures) for n in data.failures}
        return merged

    def train_step(self) -> dict[str, float]:
        step, g = self.step + 1, self.cfg.grpo
        t0 = time.perf_counter()
        data = self.rollout(step)
        t1 = time.perf_counter()
        self.score(data)
        every = self._whole_batch(data)
        # Once per step, on the whole batch (batch-level scales need every rank's rewards)
        advantages = compute_advantages(torch.tensor(every["total"]), g.group_size, g.advantage, g.scale_rewards)
        data.advantages = [float(advantages[p]) for p in data.positions]
        t2 = time.perf_counter()
        lr = self.scheduler.get_last_lr()[0]
        stats = self.train_on(data)
        t3 = time.perf_counter()
        self.step = step
        times = dist.all_reduce_max([t1 - t0, t2 - t1, t3 - t2, t3 - t0])  # the slowest rank
        metrics = {
            **reward_metrics(every, [n for n in data.rewards if n in self.cfg.rewards], g.group_size, every["failures"]),
            **completion_metrics(every["length"], every["truncated"], uniform_groups(every["total"], g.group_size)),
            **stats, "lr": lr, **timing_metrics(*times, generated=sum(every["length"])),
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
        n, g = self.cfg.run.samples_per_step, self.cfg.grpo
        if not n:
            return
        picks = sample_picks(g.prompts_per_step * g.group_size, g.group_size, n)
        mine = [(picks.index(p), {
            "id": data.rows[i]["id"], "question": data.rows[i]["question"], "answer": data.rows[i]["answer"],
            "completion": data.texts[i], "reward": data.total[i], "advantage": data.advantages[i],
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
    task = _check_setup(cfg)  # everything that can fail on bad input, before anything is written
    with removed_on_failure(cfg.run.output_dir, is_writer=dist.rank() == 0):  # no empty run dir if setup fails
        run = RunDir(cfg.run.output_dir, rank=dist.rank(), tensorboard=cfg.run.tensorboard)
        trainer = _start(cfg, task, run, resume)
    from r1lab.runs.progress import TrainingProgress

    with TrainingProgress(cfg.grpo.steps, trainer.step, enabled=progress and run.is_writer) as bar:
        _run_steps(cfg, trainer, run, bar, title=f"R1-Zero: {cfg.model.name} on {task.name}")
    run.close()
    return run


def _check_setup(cfg: ZeroConfig) -> Task:
    """What the config alone cannot check: the rewards, the task, the rank count, FSDP with LoRA; returns the task."""
    load_rewards(cfg.rewards, config_dir(cfg))
    task = load_task(cfg.task)
    task.require_train(cfg.task)
    if cfg.grpo.prompts_per_step < dist.world_size():
        raise ValueError(f"grpo.prompts_per_step={cfg.grpo.prompts_per_step} must be at least the number of ranks "
                         f"({dist.world_size()}): each rank samples whole groups")
    if cfg.fsdp and cfg.model.lora_r > 0:
        raise ValueError("fsdp: not supported with LoRA (model.lora_r > 0); its few trainable weights suit DDP")
    return task


def _start(cfg: ZeroConfig, task: Task, run: RunDir, resume: bool) -> GRPOTrainer:
    """The trainer, fresh or restored from the run's latest complete checkpoint (runs.resume checks the config)."""
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
    return trainer


def _run_steps(cfg: ZeroConfig, trainer: GRPOTrainer, run: RunDir, bar, title: str) -> None:
    """Steps until the step count or the time budget is used up; evaluate, plot and checkpoint on the way."""
    if trainer.step == 0 and cfg.run.eval_every and cfg.run.eval_at_start:
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
            plot_metrics(run.read_metrics(), run.root / "plot.png", title=title)
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
