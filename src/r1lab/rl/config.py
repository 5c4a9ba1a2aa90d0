"""The R1-Zero run config: one YAML file (recipes/zero_*.yaml) maps onto these dataclasses."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from r1lab.data.base import TaskConfig
from r1lab.data.prompts import PromptConfig
from r1lab.models import ModelConfig
from r1lab.rl.grpo import LOSS_TYPES


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
    loss_type: str = "grpo"  # grpo | dr_grpo | dapo
    eps_low: float = 0.2
    eps_high: float = 0.2  # DAPO's clip-higher uses 0.28
    beta: float = 0.0  # k3 KL weight; 0 skips the reference model entirely
    scale_rewards: bool = True  # divide advantages by the group std (Dr. GRPO: false)
    drop_uniform_groups: bool = False  # DAPO dynamic sampling: skip groups whose rewards are all equal
    mask_truncated: bool = False  # DAPO overlong masking: completions cut by max_new_tokens get no gradient
    micro_batch_size: int = 16  # sequences per forward/backward; gradients accumulate to the full batch
    share_prompt_forward: bool = True  # run each prompt once per group and fan its KV cache out to the G samples
    # autocast the training forward to bf16 (weights and optimizer stay fp32); auto: where bf16 is faster here
    bf16_autocast: bool | Literal["auto"] = False
    seed: int = 0

    def __post_init__(self):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"grpo.loss_type must be one of {list(LOSS_TYPES)}, got {self.loss_type!r}")
        if self.lr_schedule not in ("constant", "linear", "cosine"):
            raise ValueError(f"grpo.lr_schedule must be constant, linear or cosine, got {self.lr_schedule!r}")
        for name in ("steps", "prompts_per_step", "group_size", "max_new_tokens", "mu", "micro_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"grpo.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class RunConfig:
    output_dir: str = "runs/zero"
    checkpoint_every: int = 10  # steps; the last step always checkpoints
    keep_checkpoints: int = 2
    eval_every: int = 10  # held-out evaluation at step 0, every N steps and at the end (0: never)
    eval_size: int = 200  # held-out prompts per evaluation
    eval_temperature: float = 0.0  # 0 = greedy: the least noisy single-sample estimate
    eval_batch_size: int = 64
    samples_per_step: int = 4  # completions written to samples.jsonl each step
    plot_every: int = 1
    tensorboard: bool = False  # also log every metric as a TensorBoard scalar under <output_dir>/tensorboard/
    time_budget_s: float = 0.0  # > 0: stop after the step that crosses this much training wall time (evals excluded)


@dataclass
class ZeroConfig:
    """R1-Zero: GRPO from a base (or instruct) model with rule-based rewards only."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    rewards: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0, "format": 1.0})
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    run: RunConfig = field(default_factory=RunConfig)
    engine: str = "hf"  # rollout backend: auto (native where it knows the model, else hf) | hf (transformers generate) | native | vllm (GPU)
    engine_options: dict[str, Any] = field(default_factory=dict)  # backend arguments, e.g. vllm's {gpu_memory_utilization: 0.3}
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    fsdp: bool = False  # under torchrun: shard weights, gradients and optimizer state (FSDP2) instead of DDP replicas

    def __post_init__(self):
        if not self.rewards:
            raise ValueError("rewards: at least one reward with a weight is needed")
