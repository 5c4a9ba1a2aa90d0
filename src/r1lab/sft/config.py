"""The SFT run config: one YAML file (recipes/sft_*.yaml) maps onto these dataclasses."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from r1lab.data.prompts import PromptConfig
from r1lab.models import ModelConfig
from r1lab.optim import SCHEDULES

FORMATS = ("auto", "chat", "prompt_completion")


@dataclass
class SFTDataConfig:
    path: str = ""  # JSONL (or .jsonl.gz) of chat rows or prompt/completion rows
    format: str = "auto"  # auto: per row, `messages` -> chat, else prompt/completion | chat | prompt_completion
    messages_field: str = "messages"  # chat rows: list of {role, content}; loss on assistant turns only
    prompt_field: str = "prompt"  # prompt/completion rows: the question (rendered with `prompt`, see below)
    completion_field: str = "completion"  # the reply, usually starting with the prefill ("<think>..."); loss on it + EOS
    render_prompt: bool = True  # true: render the prompt field like RL/eval do (prompts.render); false: use it verbatim

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"data.format must be one of {list(FORMATS)}, got {self.format!r}")


@dataclass
class SFTTrainConfig:
    epochs: float = 1.0  # passes over the data; ignored when steps > 0
    steps: int = 0  # optimizer steps; 0 = ceil(epochs * samples / batch_size)
    batch_size: int = 16  # samples per optimizer step, global across ranks
    max_seq_len: int = 1024  # longer samples are cut from the right (counted in truncated_samples)
    micro_batch_tokens: int = 4096  # padded tokens per forward/backward; gradients accumulate to the full batch
    packing: bool = True  # several whole samples per row, attention kept within each sample; false: one per row
    lr: float = 1e-5
    lr_schedule: str = "cosine"  # constant | linear | cosine (after warmup)
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # 0 = no clipping (the norm is still logged)
    # autocast the forward to bf16 (weights and optimizer stay fp32); auto: where bf16 is faster here
    bf16_autocast: bool | Literal["auto"] = False
    seed: int = 0  # sample order (a fresh permutation each epoch) and LoRA init

    def __post_init__(self):
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"train.lr_schedule must be one of {list(SCHEDULES)}, got {self.lr_schedule!r}")
        for name in ("batch_size", "max_seq_len", "micro_batch_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if self.steps < 0 or self.warmup_steps < 0:
            raise ValueError("train.steps and train.warmup_steps must be >= 0")
        if self.steps == 0 and self.epochs <= 0:
            raise ValueError(f"train.epochs must be > 0 when train.steps is 0, got {self.epochs}")
        if self.micro_batch_tokens < self.max_seq_len:
            raise ValueError(f"train.micro_batch_tokens ({self.micro_batch_tokens}) must be >= train.max_seq_len "
                             f"({self.max_seq_len}): one full row has to fit in a forward pass")


@dataclass
class SFTRunConfig:
    output_dir: str = "runs/sft"
    checkpoint_every: int = 50  # steps; the last step always checkpoints
    keep_checkpoints: int = 2
    plot_every: int = 10  # steps; the last step always plots (0: never)

    def __post_init__(self):
        if self.checkpoint_every < 1 or self.keep_checkpoints < 1:
            raise ValueError("run.checkpoint_every and run.keep_checkpoints must be >= 1")


@dataclass
class SFTConfig:
    """Supervised fine-tuning: next-token loss on the reply tokens only (R1's cold start, distillation)."""

    model: ModelConfig = field(default_factory=ModelConfig)  # lora_r > 0 trains LoRA adapters only
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)  # how prompt/completion rows' prompts are rendered
    train: SFTTrainConfig = field(default_factory=SFTTrainConfig)
    run: SFTRunConfig = field(default_factory=SFTRunConfig)
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
