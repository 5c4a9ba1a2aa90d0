"""What differs between the decoder families the native forward runs, stated as data.

Every family here is a pre-norm (or post-norm) transformer with RoPE, grouped-query attention and a
gated MLP; transformers' modular_*.py files state each as a few changes to Llama, and so does this
module. `family_plan(config)` reads a model config into a `FamilyPlan` the one forward in
forward.py follows; anything it cannot compute exactly raises UnsupportedModelError.

    llama, mistral, qwen2  pre-norms; Qwen2 q/k/v biases; Mistral / Qwen2 sliding windows
    qwen3                  + per-head q/k RMSNorm, explicit head_dim
    smollm3                + NoPE layers (no rotary) at an interval
    olmo2                  norms after attention / MLP instead of before; q/k norm over the projection
    phi3 (Phi-3, Phi-4-mini) fused qkv_proj / gate_up_proj, partial rotary, longrope (short factor)
    gemma3_text            (1 + w) RMSNorm in fp32, pre- and post-norms, GeGLU, embeddings scaled by
                           sqrt(C), q/k norm, query_pre_attn_scalar, 5 sliding : 1 full layers, a rope
                           theta per layer type
"""
from __future__ import annotations

from dataclasses import dataclass, field

# RoPE variants whose frequencies follow the running sequence length: a precomputed table would be wrong.
_DYNAMIC_ROPE = ("dynamic",)


class UnsupportedModelError(ValueError):
    pass


@dataclass(frozen=True)
class Family:
    """How one model_type departs from Llama. Norm slots name the HF module attributes of a layer."""

    pre_attn_norm: str | None = "input_layernorm"
    post_attn_norm: str | None = None  # applied to the attention output, before the residual add
    pre_mlp_norm: str | None = "post_attention_layernorm"
    post_mlp_norm: str | None = None
    norm: str = "llama"  # llama: w * x.to(dtype); fp32: (w32 * x32).to(dtype) (OLMo 2, Gemma)
    norm_offset: float = 0.0  # Gemma scales by (1 + w)
    qk_norm: str | None = None  # "head": RMSNorm over D per head; "full": over the whole projection
    qkv: tuple[str, ...] = ("q_proj", "k_proj", "v_proj")  # one name = a fused projection
    gate_up: tuple[str, ...] = ("gate_proj", "up_proj")
    scaled_embeddings: bool = False  # x = embed * sqrt(C), rounded to the weight dtype (Gemma)
    windows_by_layer_type: bool = True  # False: config.sliding_window holds for every layer (Mistral, Phi-3)
    nope_layers: bool = False  # config.no_rope_layers[i] == 0: layer i has no rotary (SmolLM3)


LLAMA = Family()
FAMILIES = {
    "llama": LLAMA,
    "mistral": Family(windows_by_layer_type=False),
    "qwen2": LLAMA,
    "qwen3": Family(qk_norm="head"),
    "smollm3": Family(nope_layers=True),
    "olmo2": Family(pre_attn_norm=None, post_attn_norm="post_attention_layernorm", pre_mlp_norm=None,
                    post_mlp_norm="post_feedforward_layernorm", norm="fp32", qk_norm="full"),
    "phi3": Family(qkv=("qkv_proj",), gate_up=("gate_up_proj",), windows_by_layer_type=False),
    "gemma3_text": Family(post_attn_norm="post_attention_layernorm", pre_mlp_norm="pre_feedforward_layernorm",
                          post_mlp_norm="post_feedforward_layernorm", norm="fp32", norm_offset=1.0,
                          qk_norm="head", scaled_embeddings=True),
}
ACTIVATIONS = ("silu", "gelu_pytorch_tanh", "gelu")


@dataclass(frozen=True)
class LayerPlan:
    rope: str | None  # the key of this layer's RoPE table (its layer type), None for a NoPE layer
    window: int | None  # sliding window: position q sees keys k with q - window < k <= q


@dataclass(frozen=True)
class FamilyPlan:
    family: Family
    layers: list[LayerPlan]
    head_dim: int
    attn_scale: float  # multiplies q . k
    activation: str
    max_positions: int  # the longest sequence whose RoPE table is exact
    rope_by_layer_type: bool  # the rotary module takes a layer_type (Gemma 3)
    final_softcap: float | None = None
    embed_scale: float | None = None
    windows: list[int] = field(default_factory=list)  # distinct windows in use


def _windows(config, family: Family, layer_types: list[str]) -> list[int | None]:
    window = getattr(config, "sliding_window", None)
    if window is None:
        return [None] * len(layer_types)
    if not family.windows_by_layer_type:
        return [int(window)] * len(layer_types)
    return [int(window) if t == "sliding_attention" else None for t in layer_types]


def _max_positions(config, rope: dict) -> int:
    limit = int(config.max_position_embeddings)
    if rope.get("rope_type") == "longrope":
        # HF switches to the long factors once a sequence outgrows the original length; below it the
        # short-factor table is exact, so the engine stays below it.
        limit = min(limit, int(rope.get("original_max_position_embeddings")
                                or getattr(config, "original_max_position_embeddings", limit)))
    return limit


def family_plan(config) -> FamilyPlan:
    """The plan for `config`, or UnsupportedModelError naming what the engine cannot do."""
    kind = getattr(config, "model_type", None)
    if kind not in FAMILIES:
        raise UnsupportedModelError(
            f"the native engine supports model_type in {sorted(FAMILIES)}, got {kind!r}; "
            "use engine 'hf' (transformers generate) or 'auto' for other architectures")
    family = FAMILIES[kind]
    activation = getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", "silu")
    if activation not in ACTIVATIONS:
        raise UnsupportedModelError(f"the native engine needs an activation in {ACTIVATIONS}, got {activation!r}")
    if getattr(config, "attn_logit_softcapping", None) is not None:
        raise UnsupportedModelError("the native engine does not cap attention logits (attn_logit_softcapping)")
    if getattr(config, "use_bidirectional_attention", False):
        raise UnsupportedModelError("the native engine runs causal attention only (use_bidirectional_attention)")
    if getattr(config, "pretraining_tp", 1) not in (1, None):
        raise UnsupportedModelError("the native engine does not emulate pretraining_tp > 1")
    num_layers = config.num_hidden_layers
    layer_types = list(getattr(config, "layer_types", None) or ["full_attention"] * num_layers)
    rope_params = getattr(config, "rope_parameters", None) or {}
    by_type = all(t in rope_params for t in set(layer_types))  # Gemma 3: {layer type: rope parameters}
    ropes = [rope_params.get(t, {}) for t in set(layer_types)] if by_type else [rope_params]
    for rope in ropes:
        if rope.get("rope_type", "default") in _DYNAMIC_ROPE:
            raise UnsupportedModelError(f"the native engine precomputes RoPE and cannot do rope_type={rope['rope_type']!r}")
    uses_rope = [bool(config.no_rope_layers[i]) for i in range(num_layers)] if family.nope_layers else [True] * num_layers
    windows = _windows(config, family, layer_types)
    layers = [LayerPlan(rope=(layer_types[i] if by_type else "default") if uses_rope[i] else None, window=windows[i])
              for i in range(num_layers)]
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    scalar = getattr(config, "query_pre_attn_scalar", None) if kind == "gemma3_text" else None
    return FamilyPlan(
        family=family, layers=layers, head_dim=head_dim, attn_scale=(scalar or head_dim) ** -0.5,
        activation=activation, max_positions=min(_max_positions(config, r) for r in ropes),
        rope_by_layer_type=by_type, final_softcap=getattr(config, "final_logit_softcapping", None),
        embed_scale=config.hidden_size ** 0.5 if family.scaled_embeddings else None,
        windows=sorted({w for w in windows if w is not None}),
    )
