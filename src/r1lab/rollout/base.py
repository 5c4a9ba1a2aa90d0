"""The one sampling interface: GRPO, evaluation, distillation and serving all call `Engine.generate`."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, Sequence


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 disables
    stop: list[str] = field(default_factory=list)  # text stops; the stop string is cut from `text`...
    include_stop: bool = False  # ...unless this keeps it (a closing tag the reward must see)
    logprobs: bool = True  # per-token log-probs of the sampled tokens under softmax(logits / T)

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")

    def ending_at(self, stops: Sequence[str]) -> SamplingParams:
        """These params with `stops` added, every stop string then kept in the text (a closing tag the reward
        must see); unchanged when `stops` is empty."""
        return replace(self, stop=[*self.stop, *stops], include_stop=True) if stops else self


FinishReason = Literal["stop", "length"]


@dataclass
class Completion:
    prompt_ids: list[int]
    token_ids: list[int]  # generated tokens, EOS included when the model emitted it
    text: str  # decoded generation without special tokens, cut before (include_stop: after) any stop string
    finish_reason: FinishReason  # "stop": EOS or a stop string; "length": hit max_new_tokens
    logprobs: list[float] | None = None  # one per token_ids entry

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class Engine(Protocol):
    """Samples completions for token-id prompts.

    `seeds[i]` seeds row i's own sampling stream, so a row's completion does not depend on which
    other rows share its batch (nor on how prompts are split across ranks).
    """

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]: ...


def check_seeds(prompts: Sequence, seeds: Sequence[int] | None) -> None:
    """Every backend seeds row i with seeds[i]: one seed per prompt, or none at all."""
    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts")


def generate_text(engine: Engine, tokenizer, prompts: Sequence[str], params: SamplingParams,
                  seeds: Sequence[int] | None = None) -> list[Completion]:
    """Convenience for text prompts (already rendered, special tokens written out)."""
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    return engine.generate(ids, params, seeds)
