"""Model and tokenizer loading: hub ids, local checkpoints and GGUF files, the bundled aliases (SmolLM2-135M-Instruct,
Gemma 3 270M base; gguf.py), tiny test models."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from r1lab.gguf import GGUF_ALIASES, content_key, convert_alias, convert_file


class ModelNotFoundError(ValueError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("R1LAB_CACHE", Path.home() / ".cache" / "r1lab"))


def _save_atomically(model, tokenizer, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)  # atomic: a half-written cache never looks finished
        except OSError:
            # Another process (a second rank under torchrun) converted the same alias first; its copy is
            # complete, since it too arrived by rename. Anything else is a real error.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth")


def resolve_model_path(name_or_path: str) -> str:
    """Alias -> converted cache dir; local .gguf -> converted cache dir (keyed by its content hash);
    local dir -> itself; anything else is passed on as a hub id."""
    if name_or_path in GGUF_ALIASES or name_or_path in TINY_ALIASES:
        target = cache_dir() / "models" / name_or_path
        if not (target / "config.json").is_file():  # built once, on first use
            if name_or_path in GGUF_ALIASES:
                convert_alias(name_or_path, target, _save_atomically)
            else:
                _save_tiny(name_or_path, target)
        return str(target)
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        target = cache_dir() / "models" / content_key(path)
        if not (target / "config.json").is_file():
            convert_file(path, target, _save_atomically)
        return str(target)
    if path.exists():
        latest = path / "checkpoints" / "latest"  # a run directory stands for its last checkpoint
        if not (path / "config.json").is_file() and latest.is_file():
            path = path / "checkpoints" / latest.read_text().strip()
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path}: not a model directory (no config.json) or .gguf file")
        if not any(any(path.glob(pattern)) for pattern in WEIGHT_FILES):
            raise ModelNotFoundError(f"{path}: a model directory without weights (no {', '.join(WEIGHT_FILES)} file)")
        return str(path)
    if name_or_path.count("/") != 1 or name_or_path.startswith((".", "/", "~")) or name_or_path.endswith(".gguf"):
        raise ModelNotFoundError(
            f"unknown model {name_or_path!r}: expected an alias ({', '.join([*GGUF_ALIASES, *TINY_ALIASES])}), "
            "a local checkpoint directory or .gguf file, or a hub id like 'org/name'"
        )
    return name_or_path


@dataclass
class ModelConfig:
    name: str = "smollm2-135m"  # alias, local checkpoint dir, or hub id
    lora_r: int = 0  # > 0 trains LoRA adapters (peft) instead of all weights
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")


def load_tokenizer(name_or_path: str):
    path = resolve_model_path(name_or_path)
    if Path(path).is_dir() and not any((Path(path) / name).is_file() for name in TOKENIZER_FILES):
        # transformers would try to build one and complain about sentencepiece / tiktoken instead
        raise ModelNotFoundError(f"{path}: no tokenizer files (expected one of {', '.join(TOKENIZER_FILES)}); "
                                 "save the tokenizer beside config.json")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelNotFoundError(f"could not load the tokenizer of {name_or_path!r}: {first_line}") from err
    return prepare_tokenizer(tokenizer)


def prepare_tokenizer(tokenizer):
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # batched generation appends on the right
    return tokenizer


def load_model(name_or_path: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    path = resolve_model_path(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except OSError as err:
        raise ModelNotFoundError(f"could not load model {name_or_path!r}: {err}") from err
    return model.to(device)


def load_trainable(cfg: ModelConfig, checkpoint: str | Path | None = None):
    """The model a trainer updates: full weights, or LoRA adapters (peft) on the frozen base.

    `checkpoint` is a run's saved step: full weights, or (LoRA) the adapters to put back on the base.
    """
    if cfg.lora_r <= 0:
        return load_model(str(checkpoint) if checkpoint is not None else cfg.name)
    from peft import LoraConfig, PeftModel, get_peft_model

    base = load_model(cfg.name)
    if checkpoint is not None:
        return PeftModel.from_pretrained(base, checkpoint, is_trainable=True)
    return get_peft_model(base, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                           target_modules=cfg.lora_targets, task_type="CAUSAL_LM"))


# ---------------------------------------------------------------- tiny models for tests and demos
TINY_SPECIALS = ["<pad>", "<|im_start|>", "<|im_end|>"]
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer over printable ASCII: real text in, real text out, no files."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders

    chars = [chr(c) for c in range(32, 127)] + ["\n", "\t"]
    vocab = {tok: i for i, tok in enumerate(TINY_SPECIALS + chars)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=" "))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    tok.add_special_tokens({"additional_special_tokens": TINY_SPECIALS[1:]})
    tok.chat_template = TINY_CHAT_TEMPLATE
    return prepare_tokenizer(tok)


# What each tiny family sets beyond the shared shape: the features that make the family different.
TINY_FAMILIES = {
    "llama": {}, "qwen2": {}, "mistral": {},
    "qwen3": dict(head_dim=24),  # explicit head_dim != hidden / heads
    "gemma3_text": dict(head_dim=16, query_pre_attn_scalar=24, hidden_activation="gelu_pytorch_tanh",
                        sliding_window=8, layer_types=["sliding_attention", "full_attention"],
                        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                                         "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0}}),
    "phi3": dict(partial_rotary_factor=0.5),
    "olmo2": {},
    "smollm3": dict(no_rope_layer_interval=2),  # layer 1 of 2 has no rotary
}


def tiny_model(family: str = "llama", vocab_size: int = 128, seed: int = 0, **overrides):
    """A randomly initialised 2-layer decoder of a real architecture (a model_type in TINY_FAMILIES)."""
    if family not in TINY_FAMILIES:
        raise ValueError(f"tiny_model family must be one of {sorted(TINY_FAMILIES)}, got {family!r}")
    spec = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    spec.update(TINY_FAMILIES[family])
    spec.update(overrides)
    config = AutoConfig.for_model(family, **spec)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


# Random tiny checkpoints by name, so that recipes (recipes/r1_tiny.yaml) and tests run the real
# file-based code paths in seconds without shipping weights.
TINY_ALIASES = {"tiny-llama": "llama", "tiny-qwen2": "qwen2", "tiny-qwen3": "qwen3", "tiny-gemma3": "gemma3_text"}


def _save_tiny(alias: str, target: Path) -> None:
    tokenizer = tiny_tokenizer()
    _save_atomically(tiny_model(TINY_ALIASES[alias], vocab_size=len(tokenizer)), tokenizer, target)
