"""Prompt styles: the verbatim R1-Zero template, a chat style for instruct models, R1's usage advice.

`render` returns the full prompt text, ending with the prefill (e.g. "<think>") that the reply is
forced to start with; rewards must see `prefill + generated text`, which `full_completion` builds.
"""
from __future__ import annotations

from dataclasses import dataclass

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
    "</answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here "
    "</answer>. User: {prompt}. Assistant:"
)
R1_MATH_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."
CHAT_SYSTEM = (
    "You are a helpful assistant. You first think about the reasoning process and then give the answer. "
    "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>."
)
EXAMPLE_QUESTION = "What is 3 + 4 - 2?"
EXAMPLE_COMPLETION = "<think> 3 + 4 = 7. 7 - 2 = 5. </think> <answer>5</answer>"

STYLES = ("zero", "chat", "r1")
ANSWER_CLOSE = "</answer>"


@dataclass
class PromptConfig:
    style: str = "chat"  # zero: R1-Zero template as plain text; chat: chat template + format system prompt; r1: R1 usage advice
    prefill: str = "<think>"  # text the reply is forced to start with ("" for none)
    example: bool = True  # chat style: one worked example turn (a 135M model never finds the tags without it)
    system: str = CHAT_SYSTEM  # chat style system prompt ("" for none)
    # End each reply at the template's last tag: what a small instruct model writes after "</answer>" at T 1
    # is never sampled, scored or trained on, so response length measures the think block and the answer.
    stop_at_answer: bool = False

    @property
    def stops(self) -> list[str]:
        """Text stops every sampler of this prompt adds, kept in the reply (the format reward needs the tag)."""
        return [ANSWER_CLOSE] if self.stop_at_answer else []

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"prompt.style must be one of {list(STYLES)}, got {self.style!r}")


def _chat(tokenizer, messages: list[dict]) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("prompt.style=chat needs a tokenizer with a chat template; use prompt.style=zero for base models")
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def bos_text(tokenizer) -> str:
    """The BOS token as text if this tokenizer puts one first by itself (Gemma, Llama 3), else "".

    Prompts are tokenized with add_special_tokens=False everywhere (a chat template writes its own
    BOS), so a plain-text prompt must carry it: Gemma without its <bos> is a much worse model.
    """
    bos = getattr(tokenizer, "bos_token", None)
    if tokenizer is None or bos is None:
        return ""
    ids = tokenizer("a")["input_ids"]
    return bos if ids and ids[0] == tokenizer.bos_token_id else ""


def render(question: str, cfg: PromptConfig, tokenizer=None) -> str:
    if cfg.style == "zero":
        return bos_text(tokenizer) + R1_ZERO_TEMPLATE.format(prompt=question) + (" " + cfg.prefill if cfg.prefill else "")
    if cfg.style == "r1":  # no system prompt, instructions in the user turn, reply opens the think block
        return _chat(tokenizer, [{"role": "user", "content": f"{question}\n{R1_MATH_SUFFIX}"}]) + cfg.prefill
    messages = [{"role": "system", "content": cfg.system}] if cfg.system else []
    if cfg.example:
        messages += [{"role": "user", "content": EXAMPLE_QUESTION},
                     {"role": "assistant", "content": EXAMPLE_COMPLETION}]
    messages.append({"role": "user", "content": question})
    return _chat(tokenizer, messages) + cfg.prefill


def full_completion(generated: str, cfg: PromptConfig) -> str:
    """The reply as the model 'said' it: the forced prefill plus what it generated."""
    return cfg.prefill + generated
