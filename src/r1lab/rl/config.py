"""The R1-Zero run config: one YAML file (recipes/zero_*.yaml) maps onto these dataclasses."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from r1lab.data.base import TaskConfig
from r1lab.data.prompts import PromptConfig
from r1lab.models import ModelConfig
from r1lab.rl.advantages import ADVANTAGE_ESTIMATORS, REWARD_SCALES, reward_scale
from r1lab.rl.grpo import KL_ESTIMATORS, LOSS_TYPES
from r1lab.rl.layout import LAYOUTS
from r1lab.rl.mismatch import CORRECTION_LEVELS, ROLLOUT_CORRECTIONS


@dataclass
class GRPOConfig:
    steps: int = 60
    prompts_per_step: int = 4  # P distinct prompts per step; P * group_size samples
    group_size: int = 8  # G samples per prompt
    max_new_tokens: int = 64
    temperature: float = 1.0  # sampling temperature; the loss uses the same softmax(logits / T)
    top_p: float = 1.0
    lr: float = 1e-5
    lr_schedule: str = "constant"  # constant | linear | cosine (after warmup)
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    mu: int = 1  # optimizer updates per batch of samples (pi_old is the sampling policy)
    # The policy loss, docs/rl.md has each one's formula and paper: grpo | dr_grpo | dapo | gspo | cispo | sapo
    loss_type: str = "grpo"
    eps_low: float = 0.2  # ratio clip below: 1 - eps_low (gspo: the sequence ratio; cispo: the IS weight)
    eps_high: float = 0.2  # ratio clip above: 1 + eps_high. DAPO's clip-higher uses 0.28; cispo large (e.g. 4 = TRL's 5)
    sapo_tau_pos: float = 1.0  # sapo's gate temperature for tokens with A > 0 (TRL's default)
    sapo_tau_neg: float = 1.05  # ... and for A <= 0
    beta: float = 0.0  # KL weight; 0 skips the reference model entirely
    kl_estimator: Literal["k1", "k2", "k3", "k3_ratio"] = "k3"  # docs/rl.md says which gradient each gives
    # Advantages: group (GRPO) | rloo (leave-one-out mean) | reinforce_pp (group mean, then batch std; ignores scale_rewards)
    advantage: Literal["group", "rloo", "reinforce_pp"] = "group"
    # divide advantages by: group (the group std) | batch (the batch's reward std) | none (Dr. GRPO); true/false = group/none
    scale_rewards: bool | Literal["group", "batch", "none"] = "group"
    entropy_coef: float = 0.0  # > 0: an entropy bonus, -coef * H per token, averaged as the loss type averages
    top_entropy_quantile: float = 1.0  # < 1: the policy loss only on the step's top fraction of tokens by entropy
    log_mismatch: bool = True  # keep the engine's sampling log-probs; log mismatch/* (sampler vs trainer) each step
    # Correct the sampler/trainer gap (needs log_mismatch): none | tis (truncated IS weights) | mis (masked IS)
    rollout_correction: Literal["none", "tis", "mis"] = "none"
    rollout_correction_level: Literal["token", "sequence"] = "token"
    rollout_correction_cap: float = 3.0  # tis: weights capped here; mis: tokens/sequences above it dropped (TRL: 3)
    logits_chunk_mb: int = 8  # the training LM head (rl.fused_head) computes blocks of at most this many MB of fp32 logits
    drop_uniform_groups: bool = False  # DAPO dynamic sampling: skip groups whose rewards are all equal
    mask_truncated: bool = False  # DAPO overlong masking: completions cut by max_new_tokens get no gradient
    micro_batch_size: int = 16  # sequences per forward/backward; gradients accumulate to the full batch
    # > 0: micro-batches sized in tokens instead (whole groups, each prompt once plus its completions; padded
    # layout: padded positions), so short replies share one forward and long ones cannot outgrow memory
    micro_batch_tokens: int = 0
    # The training forward's layout: packed (a micro-batch's groups as one unpadded row, each prompt once),
    # shared_prompt (padded; each prompt's KV cache fanned out to its group) or padded (full padded sequences)
    layout: Literal["packed", "shared_prompt", "padded"] = "packed"
    # autocast the training forward to bf16 (weights and optimizer stay fp32); auto: where bf16 is faster here
    bf16_autocast: bool | Literal["auto"] = False
    seed: int = 0

    def __post_init__(self):
        choices = {"loss_type": LOSS_TYPES, "kl_estimator": KL_ESTIMATORS, "advantage": ADVANTAGE_ESTIMATORS,
                   "rollout_correction": ROLLOUT_CORRECTIONS, "rollout_correction_level": CORRECTION_LEVELS,
                   "layout": LAYOUTS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"grpo.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if reward_scale(self.scale_rewards) not in REWARD_SCALES:
            raise ValueError(f"grpo.scale_rewards must be one of {list(REWARD_SCALES)} or true/false, "
                             f"got {self.scale_rewards!r}")
        if self.advantage == "rloo" and self.group_size < 2:
            raise ValueError("grpo.advantage=rloo needs grpo.group_size >= 2 (a leave-one-out mean of the others)")
        if not 0.0 < self.top_entropy_quantile <= 1.0:
            raise ValueError(f"grpo.top_entropy_quantile must be in (0, 1], got {self.top_entropy_quantile}")
        if self.rollout_correction != "none" and not self.log_mismatch:
            raise ValueError("grpo.rollout_correction needs grpo.log_mismatch=true (the engine's sampling log-probs)")
        for name in ("rollout_correction_cap", "sapo_tau_pos", "sapo_tau_neg"):
            if getattr(self, name) <= 0:
                raise ValueError(f"grpo.{name} must be > 0, got {getattr(self, name)}")
        for name in ("entropy_coef", "eps_low", "eps_high", "beta"):
            if getattr(self, name) < 0:
                raise ValueError(f"grpo.{name} must be >= 0, got {getattr(self, name)}")
        if self.lr_schedule not in ("constant", "linear", "cosine"):
            raise ValueError(f"grpo.lr_schedule must be constant, linear or cosine, got {self.lr_schedule!r}")
        for name in ("steps", "prompts_per_step", "group_size", "max_new_tokens", "mu", "micro_batch_size",
                     "logits_chunk_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"grpo.{name} must be >= 1, got {getattr(self, name)}")
        if self.group_size < 2:  # advantages compare a sample with its group: one sample is always "average"
            raise ValueError(f"grpo.group_size must be >= 2 (a group of one never gets a gradient), got {self.group_size}")
        for name in ("lr", "temperature", "max_grad_norm"):  # the loss divides the logits by the temperature
            if not getattr(self, name) > 0:
                raise ValueError(f"grpo.{name} must be > 0, got {getattr(self, name)}")
        for name in ("warmup_steps", "weight_decay", "eps_low", "eps_high", "beta", "micro_batch_tokens"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"grpo.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"grpo.top_p must be in (0, 1], got {self.top_p}")


@dataclass
class RunConfig:
    output_dir: str = "runs/zero"
    checkpoint_every: int = 10  # steps; the last step always checkpoints
    keep_checkpoints: int = 2
    eval_every: int = 10  # held-out evaluation at step 0, every N steps and at the end (0: never)
    eval_at_start: bool = True  # the step-0 evaluation; off for runs that share one starting model (comparisons)
    eval_size: int = 200  # held-out prompts per evaluation
    eval_temperature: float = 0.0  # 0 = greedy: the least noisy single-sample estimate
    eval_batch_size: int = 64
    samples_per_step: int = 4  # completions written to samples.jsonl each step
    plot_every: int = 1
    tensorboard: bool = False  # also log every metric as a TensorBoard scalar under <output_dir>/tensorboard/
    time_budget_s: float = 0.0  # > 0: stop after the step that crosses this much training wall time (evals excluded)

    def __post_init__(self):
        for name in ("checkpoint_every", "keep_checkpoints", "eval_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"run.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "eval_temperature", "samples_per_step", "plot_every", "time_budget_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"run.{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class ZeroConfig:
    """R1-Zero: GRPO from a base (or instruct) model with rule-based rewards only."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    # keys: a registered name, package.module:function or path/to/file.py:function (beside the recipe, then cwd)
    rewards: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0, "format": 1.0})
    # a reward that raises, times out or returns NaN / a non-number: stop (error), score 0 (zero) or leave it out (skip)
    reward_errors: Literal["error", "zero", "skip"] = "error"
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    run: RunConfig = field(default_factory=RunConfig)
    engine: str = "auto"  # rollout backend: auto (native where it knows the model, else hf with a notice) | hf (transformers generate) | native | vllm (GPU)
    engine_options: dict[str, Any] = field(default_factory=dict)  # backend arguments, e.g. vllm's {gpu_memory_utilization: 0.3}
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    fsdp: bool = False  # under torchrun: shard weights, gradients and optimizer state (FSDP2) instead of DDP replicas

    def __post_init__(self):
        if not self.rewards:
            raise ValueError("rewards: at least one reward with a weight is needed")
