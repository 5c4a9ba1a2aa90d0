"""Reading a HF decoder's weights into the native forward's layout, as its FamilyPlan says.

By default the tensors are the model's own (no copy), so a trainer that updates the policy in place
is seen by the next `generate` call. A `WeightReader` with `copies=True` makes a snapshot instead
(a cast dtype, int8 or oneDNN-prepacked Linears, linear.py): q/k/v and gate/up then fuse into one
matmul each.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from r1lab.rollout.families import FamilyPlan, UnsupportedModelError
from r1lab.rollout.linear import DenseLinear, Int8Linear, PackedLinear, SplitLinear

Linear = DenseLinear | PackedLinear | Int8Linear
# A tied head over a vocabulary this large (Gemma's 262k) is not worth a second, prepacked copy of
# the embedding table (V x C, 0.7 GB in fp32 for Gemma 3 270M): the sliced dense LM head reads the one copy.
MAX_PREPACKED_TIED_VOCAB = 65536


@dataclass
class LayerWeights:
    qkv: SplitLinear  # C -> (H * D, Hkv * D, Hkv * D)
    o: Linear  # H * D -> C
    gate_up: SplitLinear  # C -> (I, I)
    down: Linear  # I -> C
    # Norm weights (None: the family has no such norm), ready to multiply: Gemma's (1 + w) already added.
    pre_attn_norm: torch.Tensor | None = None  # (C,)
    post_attn_norm: torch.Tensor | None = None  # (C,)
    pre_mlp_norm: torch.Tensor | None = None  # (C,)
    post_mlp_norm: torch.Tensor | None = None  # (C,)
    q_norm: torch.Tensor | None = None  # (D,) per head, or (H * D,) over the projection
    k_norm: torch.Tensor | None = None


@dataclass
class ModelWeights:
    embed: torch.Tensor  # (V, C)
    layers: list[LayerWeights]
    final_norm: torch.Tensor  # (C,)
    lm_head: Linear  # C -> V; shares `embed`'s tensor when tied and dense


def linear_weights(module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) of a Linear as its forward applies them, folding in active peft LoRA adapters.

    The GRPO trainer may hand us a LoRA-wrapped policy; reading `base_layer.weight` alone would
    silently sample from the base model. Merging B @ A here costs a small copy per generate call.
    """
    base = getattr(module, "base_layer", None)
    if base is None:
        return module.weight, module.bias
    if not hasattr(module, "get_delta_weight") or not isinstance(base, torch.nn.Linear):
        raise UnsupportedModelError(f"NativeEngine cannot read adapter layer {type(module).__name__}")
    weight, bias = base.weight, base.bias
    if module.merged:  # the adapters already live in base.weight
        if module.disable_adapters:
            raise UnsupportedModelError("NativeEngine cannot read a merged LoRA layer with adapters disabled")
        return weight, bias
    if module.disable_adapters:
        return weight, bias
    for name in module.active_adapters:
        if name not in module.lora_A:
            continue
        if module.use_dora.get(name) or module.lora_bias.get(name):
            raise UnsupportedModelError(f"NativeEngine supports plain LoRA only, adapter {name!r} uses DoRA or lora_bias")
        weight = weight + module.get_delta_weight(name)
    return weight, bias


class WeightReader:
    """Reads `hf` (a HF causal LM) per `plan`: shared tensors, or a cast / int8 / prepacked copy."""

    def __init__(self, hf, plan: FamilyPlan, dtype: torch.dtype, copies: bool, quantize: str | None,
                 prepack: bool):
        self.hf, self.plan, self.dtype = hf, plan, dtype
        self.copies, self.quantize, self.prepack = copies, quantize, prepack
        config = hf.config
        heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
        self.qkv_sizes = [heads * plan.head_dim, kv_heads * plan.head_dim, kv_heads * plan.head_dim]
        self.gate_up_sizes = [config.intermediate_size] * 2

    def cast(self, t: torch.Tensor | None) -> torch.Tensor | None:
        # A copy is a snapshot as a whole: norms and embeddings must not follow the model either.
        return None if t is None else t.detach().to(self.dtype, copy=self.copies)

    def norm(self, module) -> torch.Tensor | None:
        if module is None:
            return None
        family = self.plan.family
        if family.norm == "fp32":  # (w32 * x32).to(dtype): keep the weight in fp32, offset included
            weight = module.weight.detach().float()
            return weight + family.norm_offset if family.norm_offset else weight.clone() if self.copies else weight
        return self.cast(module.weight)

    def make(self, weight, bias) -> Linear:
        if self.quantize == "int8":
            return Int8Linear(weight, bias)
        if self.prepack:
            return PackedLinear(self.cast(weight), self.cast(bias))
        return DenseLinear(self.cast(weight), self.cast(bias))

    def linear(self, module) -> Linear:
        return self.make(*linear_weights(module))

    def split(self, owner, names: tuple[str, ...], sizes: list[int]) -> SplitLinear:
        if len(names) == 1:  # fused in the checkpoint already (Phi-3)
            return SplitLinear.fused(self.linear(getattr(owner, names[0])), sizes)
        pairs = [linear_weights(getattr(owner, n)) for n in names]
        # A copy anyway: one fused matmul. For int8 too: the scales are per output row and fbgemm quantizes
        # the shared input once per call, so the fused product is the separate ones' (tested).
        if self.copies:
            return SplitLinear.fused(self.make(*SplitLinear.concatenate(pairs)), sizes)
        return SplitLinear([self.make(w, b) for w, b in pairs])

    def layer(self, layer) -> LayerWeights:
        family, attn, mlp = self.plan.family, layer.self_attn, layer.mlp

        def norm_at(name):
            return self.norm(getattr(layer, name) if name else None)

        qk = family.qk_norm is not None
        return LayerWeights(
            qkv=self.split(attn, family.qkv, self.qkv_sizes), o=self.linear(attn.o_proj),
            gate_up=self.split(mlp, family.gate_up, self.gate_up_sizes), down=self.linear(mlp.down_proj),
            pre_attn_norm=norm_at(family.pre_attn_norm), post_attn_norm=norm_at(family.post_attn_norm),
            pre_mlp_norm=norm_at(family.pre_mlp_norm), post_mlp_norm=norm_at(family.post_mlp_norm),
            q_norm=self.norm(attn.q_norm) if qk else None, k_norm=self.norm(attn.k_norm) if qk else None,
        )

    def read(self) -> ModelWeights:
        base = self.hf.model
        if hasattr(base.embed_tokens, "base_layer"):
            raise UnsupportedModelError("NativeEngine cannot read adapters on embed_tokens")
        embed = self.cast(base.embed_tokens.weight)
        head = self.hf.get_output_embeddings()
        tied = head.weight is base.embed_tokens.weight and self.quantize is None
        if tied and (not self.prepack or embed.shape[0] > MAX_PREPACKED_TIED_VOCAB):
            lm_head = DenseLinear(embed, None)  # tied: one tensor, one read
        else:
            if linear_weights(head)[1] is not None:
                raise UnsupportedModelError("NativeEngine expects an lm_head without bias")
            lm_head = self.linear(head)
        return ModelWeights(embed=embed, layers=[self.layer(layer) for layer in base.layers],
                            final_norm=self.norm(base.norm), lm_head=lm_head)
