"""The compute half of the native engine: a hand-written forward for Llama-family decoders.

It reads the weights straight from the Hugging Face modules (no copy by default), so a trainer
that updates the policy in place is seen by the next `generate` call with no re-sync. What it
removes compared with the HF forward: the per-layer module/kwargs/cache-object machinery, mask
construction, `torch.cat` KV growth, and the LM head over every prompt position.

Layout conventions: B rows in a decode step, U prompts in a prefill, C hidden size, H query heads,
Hkv key/value heads, G = H // Hkv queries per KV head, D head dim, V vocab, T positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from r1lab.precision import resolve_dtype
from r1lab.rollout.kv_cache import KVCache
from r1lab.rollout.linear import DenseLinear, Int8Linear, PackedLinear, SplitLinear, can_prepack

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "mistral")
# RoPE variants whose frequencies depend on the current sequence length: the precomputed table would be wrong.
_DYNAMIC_ROPE = ("dynamic", "longrope")
LM_HEAD_SLICE = 4096  # vocab rows per LM-head matmul (see LlamaFamilyForward.logits)


class UnsupportedModelError(ValueError):
    pass


Linear = DenseLinear | PackedLinear | Int8Linear


@dataclass
class LayerWeights:
    input_norm: torch.Tensor  # (C,)
    qkv: SplitLinear  # C -> (H * D, Hkv * D, Hkv * D)
    o: Linear  # H * D -> C
    post_norm: torch.Tensor  # (C,)
    gate_up: SplitLinear  # C -> (I, I)
    down: Linear  # I -> C


@dataclass
class ModelWeights:
    embed: torch.Tensor  # (V, C)
    layers: list[LayerWeights]
    final_norm: torch.Tensor  # (C,)
    lm_head: Linear  # C -> V; shares `embed`'s tensor when tied and dense


def check_supported(model) -> None:
    """Raise UnsupportedModelError unless the hand-written forward computes exactly what HF does."""
    config = model.config
    kind = getattr(config, "model_type", None)
    if kind not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"NativeEngine supports model_type in {SUPPORTED_MODEL_TYPES}, got {kind!r} "
            f"({type(model).__name__}); use r1lab.rollout.hf.HFEngine for other architectures"
        )
    if getattr(config, "hidden_act", "silu") != "silu":
        raise UnsupportedModelError(f"NativeEngine needs hidden_act='silu', got {config.hidden_act!r}")
    rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope_type in _DYNAMIC_ROPE:
        raise UnsupportedModelError(f"NativeEngine precomputes RoPE and cannot do rope_type={rope_type!r}")
    if getattr(config, "pretraining_tp", 1) not in (1, None):
        raise UnsupportedModelError("NativeEngine does not emulate pretraining_tp > 1")


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


def unwrap(model):
    """The HF causal LM inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def sliding_window_of(config) -> int | None:
    """The attention window if any layer uses one, else None (callers check it against their length)."""
    window = getattr(config, "sliding_window", None)
    if window is None:
        return None
    layer_types = getattr(config, "layer_types", None)
    if config.model_type == "qwen2" and not getattr(config, "use_sliding_window", False):
        return None
    if layer_types is not None and "sliding_attention" not in layer_types:
        return None
    return int(window)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # Same op order as LlamaRMSNorm so fp32 results agree bit for bit with HF.
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


class LlamaFamilyForward:
    """Prefill and single-token decode over a KVCache for Llama / Qwen2 / Mistral decoders.

    dtype: compute dtype (see r1lab.precision.resolve_dtype: a dtype, its name, "auto").
    None (default) computes in the model's own dtype on its own tensors.
    Any other dtype, quantize="int8" or prepack=True keeps a converted copy of the weights; call
    `refresh_weights()` after the model changes, or the engine keeps sampling from old weights.
    prepack: keep the copy in oneDNN's blocked layout (linear.py). None (default): whenever a
    dense copy is made anyway. True: make a prepacked copy even in the model's own dtype.
    """

    def __init__(self, model, dtype: torch.dtype | str | None = None, quantize: str | None = None,
                 prepack: bool | None = None):
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
        self.model = model  # what the caller holds (maybe a peft wrapper): parameters are read through it
        self.hf = unwrap(model)
        check_supported(self.hf)
        config = self.hf.config
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads or config.num_attention_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.num_layers = config.num_hidden_layers
        self.eps = float(config.rms_norm_eps)
        self.max_positions = int(config.max_position_embeddings)
        self.sliding_window = sliding_window_of(config)
        self.model_dtype = next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        if quantize and dtype == "auto":
            dtype = None  # int8 computes its activations in float32
        self.dtype = resolve_dtype(dtype, self.model_dtype, self.device)
        if quantize and self.dtype != torch.float32:
            raise ValueError("quantize='int8' computes activations in float32; leave dtype unset")
        self.quantize = quantize
        if prepack and (quantize or not can_prepack(self.device, self.dtype)):
            raise ValueError("prepack=True needs dense weights on a CPU torch build with oneDNN (mkldnn), "
                             "and bf16 instructions for a bf16 copy")
        self.copies_weights = self.dtype != self.model_dtype or quantize is not None or bool(prepack)
        self.prepack = (self.copies_weights and quantize is None and can_prepack(self.device, self.dtype)
                        if prepack is None else prepack)
        # Reduced-precision compute on CPU keeps K/V in fp32: decode attention then runs as fp32
        # batched matmuls straight on strided cache slices (a bf16 bmm copies strided operands
        # first: 3.6x slower, measured), and the scores lose nothing to rounding.
        reduced = self.dtype in (torch.bfloat16, torch.float16) and self.device.type == "cpu"
        self.cache_dtype = torch.float32 if reduced else self.dtype
        self._weights_copy: ModelWeights | None = None
        if self.copies_weights:
            self.refresh_weights()

    # ------------------------------------------------------------------ weights
    def _read_weights(self) -> ModelWeights:
        def cast(t):
            # A copy is a snapshot as a whole: norms and embeddings must not follow the model either.
            return None if t is None else t.detach().to(self.dtype, copy=self.copies_weights)

        def make(weight, bias) -> Linear:
            if self.quantize == "int8":
                return Int8Linear(weight, bias)
            if self.prepack:
                return PackedLinear(cast(weight), cast(bias))
            return DenseLinear(cast(weight), cast(bias))

        def linear(module) -> Linear:
            return make(*linear_weights(module))

        def split(*modules) -> SplitLinear:
            pairs = [linear_weights(m) for m in modules]
            if self.copies_weights and self.quantize is None:  # a copy anyway: one fused matmul
                return SplitLinear.fused(make(*SplitLinear.concatenate(pairs)), [w.shape[0] for w, _ in pairs])
            return SplitLinear([make(w, b) for w, b in pairs])

        base = self.hf.model
        layers = []
        for layer in base.layers:
            attn, mlp = layer.self_attn, layer.mlp
            layers.append(LayerWeights(
                input_norm=cast(layer.input_layernorm.weight),
                qkv=split(attn.q_proj, attn.k_proj, attn.v_proj), o=linear(attn.o_proj),
                post_norm=cast(layer.post_attention_layernorm.weight),
                gate_up=split(mlp.gate_proj, mlp.up_proj), down=linear(mlp.down_proj),
            ))
        if hasattr(base.embed_tokens, "base_layer"):
            raise UnsupportedModelError("NativeEngine cannot read adapters on embed_tokens")
        embed = cast(base.embed_tokens.weight)
        head = self.hf.get_output_embeddings()
        if head.weight is base.embed_tokens.weight and self.quantize is None and not self.prepack:
            lm_head = DenseLinear(embed, None)  # tied: one tensor, one read
        else:
            if linear_weights(head)[1] is not None:
                raise UnsupportedModelError("NativeEngine expects an lm_head without bias")
            lm_head = linear(head)
        return ModelWeights(embed=embed, layers=layers, final_norm=cast(base.norm.weight), lm_head=lm_head)

    def refresh_weights(self) -> None:
        """Re-copy (cast or quantize) the model's weights; a no-op when they are shared."""
        if self.copies_weights:
            with torch.no_grad():
                self._weights_copy = self._read_weights()

    def weights(self) -> ModelWeights:
        # Shared weights are re-read every call: cheap, and it also follows replaced Parameters.
        return self._weights_copy if self.copies_weights else self._read_weights()

    def rope_tables(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin: (T, D) from the model's own rotary module, so every rope_type/scaling matches HF."""
        positions = torch.arange(length, device=self.device)[None]  # (1, T)
        probe = torch.empty(0, dtype=self.dtype, device=self.device)
        cos, sin = self.hf.model.rotary_emb(probe, position_ids=positions)
        return cos[0].to(self.dtype), sin[0].to(self.dtype)

    def check_length(self, total_len: int) -> None:
        if total_len > self.max_positions:
            raise ValueError(f"prompt + max_new_tokens = {total_len} exceeds the model's "
                             f"max_position_embeddings={self.max_positions}")
        if self.sliding_window is not None and total_len > self.sliding_window:
            raise UnsupportedModelError(f"sequence length {total_len} exceeds sliding_window="
                                        f"{self.sliding_window}; NativeEngine implements full attention only")

    def new_cache(self, num_slots: int, max_len: int) -> KVCache:
        return KVCache(self.num_layers, num_slots, self.num_kv_heads, max_len, self.head_dim, self.cache_dtype,
                       self.device)

    # ------------------------------------------------------------------ compute
    def _mlp(self, lw: LayerWeights, h: torch.Tensor) -> torch.Tensor:
        gate, up = lw.gate_up(h)
        return lw.down(F.silu(gate) * up)

    def logits(self, w: ModelWeights, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C) final hidden states -> (B, V) logits."""
        h = rms_norm(x, w.final_norm, self.eps)
        if h.shape[0] == 1 or not isinstance(w.lm_head, DenseLinear):
            return w.lm_head(h)
        # Measured on 2 AVX2 cores: for a 49k x 576 head, MKL computes W @ h^T in vocab slices
        # 1.5-1.8x faster than h @ W^T (the single largest matmul of a decode step). Same sums,
        # same fp32 result up to summation order.
        weight = w.lm_head.weight  # (V, C)
        vocab = weight.shape[0]
        out = torch.empty((vocab, h.shape[0]), dtype=h.dtype, device=h.device)  # (V, B)
        h_t = h.t()  # (C, B)
        for start in range(0, vocab, LM_HEAD_SLICE):
            torch.mm(weight[start:start + LM_HEAD_SLICE], h_t, out=out[start:start + LM_HEAD_SLICE])
        return out.t().contiguous()  # (B, V)

    def prefill(self, w: ModelWeights, tokens: torch.Tensor, lengths: torch.Tensor, cache: KVCache,
                slots: torch.Tensor, rows: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                start: int = 0) -> torch.Tensor:
        """Run U right-padded prompts, store their K/V in cache `slots` (slot i gets prompt rows[i]).

        tokens: (U, Tp) right-padded; lengths: (U,). Returns (U, V) logits at each prompt's last token.
        Right padding keeps the causal mask exact for real tokens: padding only ever comes after them.
        start > 0: the tokens continue a context already in the cache at positions [0, start) of
        every slot in `slots` (a prompt prefix they all share, prefilled once).
        """
        U, Tp = tokens.shape
        H, Hkv, D = self.num_heads, self.num_kv_heads, self.head_dim
        x = F.embedding(tokens, w.embed)  # (U, Tp, C)
        cos_t, sin_t = cos[start:start + Tp][None, None], sin[start:start + Tp][None, None]  # (1, 1, Tp, D)
        mask = None
        if start:  # the whole context is visible, the new tokens causally
            mask = torch.ones((Tp, start + Tp), dtype=torch.bool, device=x.device)  # (Tp, start + Tp)
            mask[:, start:] = torch.ones((Tp, Tp), dtype=torch.bool, device=x.device).tril()
        for i, lw in enumerate(w.layers):
            h = rms_norm(x, lw.input_norm, self.eps)
            q, k, v = lw.qkv(h)
            q = apply_rope(q.view(U, Tp, H, D).transpose(1, 2), cos_t, sin_t)  # (U, H, Tp, D)
            k = apply_rope(k.view(U, Tp, Hkv, D).transpose(1, 2), cos_t, sin_t)  # (U, Hkv, Tp, D)
            v = v.view(U, Tp, Hkv, D).transpose(1, 2)  # (U, Hkv, Tp, D)
            cache.write_prefill(i, slots, rows, k, v, start)
            if start:
                context_k = cache.k[i][slots[:1], :, :start].to(q.dtype).expand(U, -1, -1, -1)  # (U, Hkv, start, D)
                context_v = cache.v[i][slots[:1], :, :start].to(q.dtype).expand(U, -1, -1, -1)
                k, v = torch.cat((context_k, k), dim=2), torch.cat((context_v, v), dim=2)  # (U, Hkv, start+Tp, D)
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                                  enable_gqa=Hkv != H)  # (U, H, Tp, D)
            x = x + lw.o(attn.transpose(1, 2).reshape(U, Tp, H * D))
            x = x + self._mlp(lw, rms_norm(x, lw.post_norm, self.eps))
        last = x[torch.arange(U, device=x.device), lengths - 1]  # (U, C): the LM head runs on these only
        return self.logits(w, last)

    def decode(self, w: ModelWeights, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache,
               cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """One token for each of the first B cache slots. tokens, positions: (B,). Returns (B, V) logits.

        Row b's new K/V is written in place at positions[b]; it attends to positions 0..positions[b].
        """
        B = tokens.shape[0]
        H, Hkv, D = self.num_heads, self.num_kv_heads, self.head_dim
        G, cache_dtype = H // Hkv, cache.k[0].dtype
        span = int(positions.max()) + 1  # attend over the longest running row only, not Tmax
        rows = torch.arange(B, device=tokens.device)
        # Additive mask, one (G, T) block per (row, KV head), built once for all layers.
        hidden = torch.arange(span, device=tokens.device)[None] > positions[:, None]  # (B, T)
        bias = torch.zeros((B, span), dtype=cache_dtype, device=tokens.device).masked_fill_(hidden, float("-inf"))
        bias = bias[:, None, None].expand(B, Hkv, G, span).reshape(B * Hkv, G, span)
        cos_b, sin_b = cos[positions][:, None], sin[positions][:, None]  # (B, 1, D)
        x = F.embedding(tokens, w.embed)  # (B, C)
        for i, lw in enumerate(w.layers):
            h = rms_norm(x, lw.input_norm, self.eps)
            q, k, v = lw.qkv(h)
            q = apply_rope(q.view(B, H, D), cos_b, sin_b)  # (B, H, D)
            k = apply_rope(k.view(B, Hkv, D), cos_b, sin_b)  # (B, Hkv, D)
            cache.k[i][rows, :, positions] = k.to(cache_dtype)
            cache.v[i][rows, :, positions] = v.view(B, Hkv, D).to(cache_dtype)
            # (B*Hkv, T, D) views of the first B slots: a uniform batch stride, so bmm reads them in place.
            keys = cache.k[i].view(-1, cache.max_len, D)[:B * Hkv, :span]
            values = cache.v[i].view(-1, cache.max_len, D)[:B * Hkv, :span]
            # Grouped-query attention without repeat_kv: each KV head's G query heads are the rows of
            # one (G, D) block, exactly HF's head h -> KV head h // G mapping. Scale 1/sqrt(D) as in HF.
            scores = torch.baddbmm(bias, q.reshape(B * Hkv, G, D).to(cache_dtype), keys.transpose(1, 2), alpha=D**-0.5)
            attn = torch.bmm(scores.softmax(dim=-1), values)  # (B*Hkv, G, D)
            x = x + lw.o(attn.view(B, H * D).to(x.dtype))  # (B, C)
            x = x + self._mlp(lw, rms_norm(x, lw.post_norm, self.eps))
        return self.logits(w, x)
