"""The compute half of the native engine: one hand-written forward for every family in families.py.

What it removes compared with the HF forward: the per-layer module/kwargs/cache-object machinery,
mask construction per call, `torch.cat` KV growth, and the LM head over every prompt position. What
differs between families (norm placement and kind, q/k norms, activation, embedding scale, RoPE per
layer type, sliding windows, NoPE layers, fused projections) comes from the model's FamilyPlan.
Sliding-window layers keep the whole sequence in the cache and mask keys older than the window, so
prefill, decode and the shared-prefix path see exactly what HF's sliding masks show.

Layout conventions: B rows in a decode step, U prompts in a prefill, C hidden size, H query heads,
Hkv key/value heads, G = H // Hkv queries per KV head, D head dim, V vocab, T positions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from r1lab.precision import resolve_dtype
from r1lab.rollout import decode_kernel
from r1lab.rollout.families import FamilyPlan, UnsupportedModelError, family_plan
from r1lab.rollout.kv_cache import KVCache
from r1lab.rollout.linear import DenseLinear, can_prepack
from r1lab.rollout.weights import LayerWeights, ModelWeights, WeightReader

LM_HEAD_SLICE = 4096  # vocab rows per LM-head matmul (see DecoderForward.logits)
# The fused prefill runs prompt tokens as decode rows: no padding, but each row reads its keys alone. Measured
# (SmolLM2 bf16, 2 AVX-512 cores, prefill + 1 token): 1.97x the SDPA path for 32 prompts of 60-280 tokens, 1.23x
# for 4 x 500, 1.03x for 4 x 1000, 0.97x for 4 x 1500, 0.66x for 1 x 4000; past this many positions SDPA's
# blocks of queries win.
ROW_PREFILL_MAX_POSITIONS = 1024
__all__ = ["DecoderForward", "ModelWeights", "UnsupportedModelError"]


def unwrap(model):
    """The HF causal LM inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, kind: str = "llama") -> torch.Tensor:
    # The same op order as the family's own RMSNorm, so fp32 results agree bit for bit with HF.
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    if kind == "fp32":  # OLMo 2, Gemma: (w * x) in fp32, then cast
        return (x32 * weight).to(x.dtype)
    return weight * x32.to(x.dtype)  # Llama: cast, then scale


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    rotary = cos.shape[-1]
    if rotary == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    # Partial rotary (Phi-3/4): only the first `rotary` dims of each head turn.
    rot, rest = x[..., :rotary], x[..., rotary:]
    return torch.cat((rot * cos + rotate_half(rot) * sin, rest), dim=-1)


def gated(activation: str, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """The gated MLP's act(gate) * up."""
    if activation == "silu":
        return F.silu(gate) * up
    return F.gelu(gate, approximate="tanh" if activation == "gelu_pytorch_tanh" else "none") * up


def visible(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None) -> torch.Tensor:
    """Which keys each query sees: causal, and within `window` (HF: q - window < k <= q)."""
    allowed = k_pos <= q_pos
    if window is not None:
        allowed &= k_pos > q_pos - window
    return allowed


class DecoderForward:
    """Prefill and single-token decode over a KVCache for the decoders in families.py.

    dtype: compute dtype (see r1lab.precision.resolve_dtype: a dtype, its name, "auto").
    None (default) computes in the model's own dtype on its own tensors.
    Any other dtype, quantize="int8" or prepack=True keeps a converted copy of the weights; call
    `refresh_weights()` after the model changes, or the engine keeps sampling from old weights.
    prepack: keep the copy in oneDNN's blocked layout (linear.py, CPU only). None (default):
    whenever a dense copy is made anyway on a CPU. True: a prepacked copy even in the model's dtype.
    attention_kernel: decode attention in r1lab's C++ kernel (decode_kernel.py; fp32 or bf16 K/V on a CPU).
    None (default): where it builds; False: torch.bmm; True: the kernel or an error.
    kv_dtype: the KV cache's dtype (a dtype or its name); None (default): the compute dtype, except fp32 for
    reduced precision on a CPU without the kernel.
    fused: decode's elementwise ops (norms with their residual adds, RoPE with the cache write, SiLU * up) as
    one C++ call each (csrc/decode_fused.cpp; with the attention kernel only), and prefill as decode rows: each
    real prompt token a row of its prompt's slot, attending through the kernel (no padding, no masks, no SDPA).
    None (default): where the engine does not promise the model's own numbers (another compute dtype than the
    model's, or int8) and they build; False: torch ops; True: also in the model's dtype (same math, other
    rounding and summation order).
    """

    def __init__(self, model, dtype: torch.dtype | str | None = None, quantize: str | None = None,
                 prepack: bool | None = None, attention_kernel: bool | None = None,
                 kv_dtype: torch.dtype | str | None = None, fused: bool | None = None):
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
        self.model = model  # what the caller holds (maybe a peft wrapper): parameters are read through it
        self.hf = unwrap(model)
        config = self.hf.config
        self.plan: FamilyPlan = family_plan(config)
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads or config.num_attention_heads
        self.head_dim = self.plan.head_dim
        self.num_layers = config.num_hidden_layers
        self.eps = float(config.rms_norm_eps)
        self.max_positions = self.plan.max_positions
        self.model_dtype = next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        if quantize and dtype == "auto":
            dtype = None  # int8 computes its activations in float32
        self.dtype = resolve_dtype(dtype, self.model_dtype, self.device)
        if quantize and self.dtype != torch.float32:
            raise ValueError("quantize='int8' computes activations in float32; leave dtype unset")
        self.quantize = quantize
        if prepack and quantize:
            raise ValueError("prepack=True needs dense weights; quantize='int8' packs its own")
        packs = can_prepack(self.device, self.dtype)
        if prepack and not packs:
            prepack = None  # where oneDNN cannot pack (a GPU; bf16 without AVX-512): the plain copy it would make
        self.copies_weights = self.dtype != self.model_dtype or quantize is not None or bool(prepack)
        self.prepack = self.copies_weights and quantize is None and packs if prepack is None else prepack
        self.attention_kernel = None
        if attention_kernel is not False and self.device.type == "cpu" and self.dtype in (torch.float32, torch.bfloat16):
            self.attention_kernel = decode_kernel.decode_attention()
        if attention_kernel and self.attention_kernel is None:
            raise RuntimeError("attention_kernel=True: the decode-attention kernel needs a CPU, fp32 or bf16 compute "
                               "and a build (see the message above, or R1LAB_DECODE_KERNEL)")
        # K/V are stored in the compute dtype, except reduced precision on a CPU without the kernel: torch.bmm
        # on bf16 copies the strided cache operands first (3.6x slower, measured), so there K/V stay fp32.
        reduced = self.dtype in (torch.bfloat16, torch.float16) and self.device.type == "cpu"
        automatic = torch.float32 if reduced and self.attention_kernel is None else self.dtype
        self.cache_dtype = automatic if kv_dtype is None else resolve_dtype(kv_dtype, self.dtype, self.device)
        if self.attention_kernel is not None and self.cache_dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"kv_dtype={self.cache_dtype}: the decode-attention kernel reads fp32 or bf16 K/V")
        # A bf16 engine's attention kernel rounds q and the weights to bf16 for its dot products (the roundings
        # its unfused ops made anyway); an fp32 engine's keeps fp32 math over either cache dtype.
        self.bf16_dots = self.dtype == torch.bfloat16
        self.fused = None
        if fused is not False and self.attention_kernel is not None:
            if fused or self.dtype != self.model_dtype or quantize is not None:
                self.fused = decode_kernel.fused_ops()
        if fused and self.fused is None:
            raise RuntimeError("fused=True: the fused decode ops need the decode-attention kernel and a build")
        self.reader = WeightReader(self.hf, self.plan, self.dtype, self.copies_weights, quantize, self.prepack)
        self._weights_copy: ModelWeights | None = None
        if self.copies_weights:
            self.refresh_weights()

    # ------------------------------------------------------------------ weights
    def refresh_weights(self) -> None:
        """Re-copy (cast or quantize) the model's weights; a no-op when they are shared."""
        if self.copies_weights:
            with torch.no_grad():
                self._weights_copy = None  # drop the old copy before making the new one: peak memory
                self._weights_copy = self.reader.read()

    def weights(self) -> ModelWeights:
        # Shared weights are re-read every call: cheap, and it also follows replaced Parameters.
        return self._weights_copy if self.copies_weights else self.reader.read()

    def rope_tables(self, length: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{layer type: (cos, sin)}, each (T, Dr), from the model's own rotary module, so every
        rope_type / scaling / per-layer-type theta matches HF."""
        positions = torch.arange(length, device=self.device)[None]  # (1, T)
        probe = torch.empty(0, dtype=self.dtype, device=self.device)
        rotary = self.hf.model.rotary_emb
        tables = {}
        for key in {layer.rope for layer in self.plan.layers if layer.rope is not None}:
            extra = {"layer_type": key} if self.plan.rope_by_layer_type else {}
            cos, sin = rotary(probe, position_ids=positions, **extra)
            tables[key] = (cos[0].to(self.dtype), sin[0].to(self.dtype))
        return tables

    def check_length(self, total_len: int) -> None:
        if total_len > self.max_positions:
            raise ValueError(f"prompt + max_new_tokens = {total_len} exceeds the {self.max_positions} positions "
                             "the model's RoPE covers (max_position_embeddings)")

    def new_cache(self, num_slots: int, max_len: int) -> KVCache:
        return KVCache(self.num_layers, num_slots, self.num_kv_heads, max_len, self.head_dim, self.cache_dtype,
                       self.device)

    # ------------------------------------------------------------------ compute
    def _norm(self, x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        return x if weight is None else rms_norm(x, weight, self.eps, self.plan.family.norm)

    def _mlp(self, lw: LayerWeights, x: torch.Tensor) -> torch.Tensor:
        """The residual branch after attention: [pre-norm] -> gated MLP -> [post-norm]."""
        return self._norm(lw.down(gated(self.plan.activation, *lw.gate_up(self._norm(x, lw.pre_mlp_norm)))),
                          lw.post_mlp_norm)

    def _qkv(self, lw: LayerWeights, x: torch.Tensor, rope) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (..., C) -> q (..., H, D), k and v (..., Hkv, D), q/k normed and rotated as the family does."""
        H, Hkv, D = self.num_heads, self.num_kv_heads, self.head_dim
        q, k, v = lw.qkv(self._norm(x, lw.pre_attn_norm))
        full = self.plan.family.qk_norm == "full"
        q = self._norm(q, lw.q_norm if full else None).unflatten(-1, (H, D))
        k = self._norm(k, lw.k_norm if full else None).unflatten(-1, (Hkv, D))
        if not full:  # per head, or no q/k norm (weights None)
            q, k = self._norm(q, lw.q_norm), self._norm(k, lw.k_norm)
        if rope is not None:
            cos, sin = rope
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k, v.unflatten(-1, (Hkv, D))

    def logits(self, w: ModelWeights, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C) final hidden states -> (B, V) logits."""
        return self.head(w, rms_norm(x, w.final_norm, self.eps, self.plan.family.norm))

    def head(self, w: ModelWeights, h: torch.Tensor) -> torch.Tensor:
        """h: (B, C) normed final hidden states -> (B, V) logits."""
        if h.shape[0] == 1 or not isinstance(w.lm_head, DenseLinear):
            out = w.lm_head(h)
        else:
            # Measured on 2 AVX2 cores: for a 49k x 576 head, MKL computes W @ h^T in vocab slices
            # 1.5-1.8x faster than h @ W^T (the single largest matmul of a decode step). Same sums,
            # same fp32 result up to summation order.
            weight = w.lm_head.weight  # (V, C)
            vocab = weight.shape[0]
            out_t = torch.empty((vocab, h.shape[0]), dtype=h.dtype, device=h.device)  # (V, B)
            h_t = h.t()  # (C, B)
            for start in range(0, vocab, LM_HEAD_SLICE):
                torch.mm(weight[start:start + LM_HEAD_SLICE], h_t, out=out_t[start:start + LM_HEAD_SLICE])
            out = out_t.t().contiguous()  # (B, V)
        cap = self.plan.final_softcap
        return out if cap is None else torch.tanh(out / cap) * cap

    def embed(self, w: ModelWeights, tokens: torch.Tensor) -> torch.Tensor:
        x = F.embedding(tokens, w.embed)
        if self.plan.embed_scale is not None:  # Gemma: the scale rounded to the weight dtype first, as HF does
            x = x * torch.tensor(self.plan.embed_scale).to(x.dtype)
        return x

    def prefill(self, w: ModelWeights, tokens: torch.Tensor, lengths: torch.Tensor, cache: KVCache,
                slots: torch.Tensor, rows: torch.Tensor, ropes: dict, start: int = 0) -> torch.Tensor:
        """Run U right-padded prompts, store their K/V in cache `slots` (slot i gets prompt rows[i]).

        tokens: (U, Tp) right-padded; lengths: (U,). Returns (U, V) logits at each prompt's last token.
        Right padding keeps the causal mask exact for real tokens: padding only ever comes after them.
        start > 0: the tokens continue a context already in the cache at positions [0, start) of
        every slot in `slots` (a prompt prefix they all share, prefilled once).
        """
        if self.fused is not None and start + tokens.shape[1] <= ROW_PREFILL_MAX_POSITIONS:
            return self._prefill_fused(w, tokens, lengths, cache, slots, rows, start, ropes)
        U, Tp = tokens.shape
        H, Hkv, D = self.num_heads, self.num_kv_heads, self.head_dim
        x = self.embed(w, tokens)  # (U, Tp, C)
        ropes_t = {key: (cos[start:start + Tp][None, :, None], sin[start:start + Tp][None, :, None])
                   for key, (cos, sin) in ropes.items()}  # (1, Tp, 1, Dr)
        q_pos = torch.arange(start, start + Tp, device=x.device)[:, None]  # (Tp, 1)
        k_pos = torch.arange(start + Tp, device=x.device)[None]  # (1, start + Tp)
        # None: plain causal attention over the new tokens only (SDPA's is_causal fast path).
        masks = {window: None if window is None and not start else visible(q_pos, k_pos, window)
                 for window in {layer.window for layer in self.plan.layers}}
        for i, (lw, layer) in enumerate(zip(w.layers, self.plan.layers)):
            q, k, v = self._qkv(lw, x, ropes_t.get(layer.rope))
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (U, H or Hkv, Tp, D)
            cache.write_prefill(i, slots, rows, k, v, start)
            if start:
                context_k = cache.k[i][slots[:1], :, :start].to(q.dtype).expand(U, -1, -1, -1)  # (U, Hkv, start, D)
                context_v = cache.v[i][slots[:1], :, :start].to(q.dtype).expand(U, -1, -1, -1)
                k, v = torch.cat((context_k, k), dim=2), torch.cat((context_v, v), dim=2)  # (U, Hkv, start+Tp, D)
            mask = masks[layer.window]
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                                  scale=self.plan.attn_scale, enable_gqa=Hkv != H)  # (U, H, Tp, D)
            x = x + self._norm(lw.o(attn.transpose(1, 2).reshape(U, Tp, H * D)), lw.post_attn_norm)
            x = x + self._mlp(lw, x)
        last = x[torch.arange(U, device=x.device), lengths - 1]  # (U, C): the LM head runs on these only
        return self.logits(w, last)

    def decode(self, w: ModelWeights, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache,
               ropes: dict) -> torch.Tensor:
        """One token for each of the first B cache slots. tokens, positions: (B,). Returns (B, V) logits.

        Row b's new K/V is written in place at positions[b]; it attends to positions 0..positions[b]
        (the last `window` of them in a sliding-window layer).
        """
        if self.fused is not None:
            return self._decode_fused(w, tokens, positions, cache, ropes)
        B = tokens.shape[0]
        H, D, cache_dtype = self.num_heads, self.head_dim, cache.k[0].dtype
        rows = torch.arange(B, device=tokens.device)
        kernel = self.attention_kernel
        biases = self._decode_biases(positions, cache_dtype) if kernel is None else {}
        ropes_b = {key: (cos[positions][:, None], sin[positions][:, None]) for key, (cos, sin) in ropes.items()}  # (B, 1, Dr)
        x = self.embed(w, tokens)  # (B, C)
        for i, (lw, layer) in enumerate(zip(w.layers, self.plan.layers)):
            q, k, v = self._qkv(lw, x, ropes_b.get(layer.rope))  # (B, H, D), (B, Hkv, D), (B, Hkv, D)
            cache.write_decode(i, rows, positions, k, v)
            if kernel is not None:
                attn = kernel(q.float(), cache.k[i], cache.v[i], positions, layer.window or 0,
                              self.plan.attn_scale, self.bf16_dots)  # (B, H, D) fp32
            else:
                attn = self._bmm_attention(q, cache, i, biases[layer.window])
            x = x + self._norm(lw.o(attn.reshape(B, H * D).to(x.dtype)), lw.post_attn_norm)  # (B, C)
            x = x + self._mlp(lw, x)
        return self.logits(w, x)

    def _decode_fused(self, w: ModelWeights, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache,
                      ropes: dict) -> torch.Tensor:
        """decode() with the fused ops (see _fused_rows): row b is slot b."""
        return self.head(w, self._fused_rows(w, tokens, positions, None, cache, ropes))

    def _prefill_fused(self, w: ModelWeights, tokens: torch.Tensor, lengths: torch.Tensor, cache: KVCache,
                       slots: torch.Tensor, rows: torch.Tensor, start: int, ropes: dict) -> torch.Tensor:
        """prefill() as decode rows (up to ROW_PREFILL_MAX_POSITIONS): every real prompt token is one row (no
        padding computed), writes its K/V at its position in its prompt's slot and attends there through the
        decode kernel. A prompt that several slots get is computed in the first of them; the others receive a
        copy of its K/V."""
        U, Tp = tokens.shape
        pairs = list(zip(slots.tolist(), rows.tolist()))  # (slot, prompt)
        home: dict[int, int] = {}
        for slot, u in pairs:
            home.setdefault(u, slot)
        real = torch.arange(Tp, device=tokens.device)[None] < lengths[:, None]  # (U, Tp)
        home_slots = torch.tensor([home[u] for u in range(U)], device=tokens.device)
        positions = (start + torch.arange(Tp, device=tokens.device)).expand(U, Tp)[real]  # (N,), prompt-major
        final = self._fused_rows(w, tokens[real], positions, home_slots[:, None].expand(U, Tp)[real], cache, ropes)
        copies = [(home[u], slot) for slot, u in pairs if slot != home[u]]
        if copies:
            src, dst = (torch.tensor(side, device=tokens.device) for side in zip(*copies))
            cache.move_slots(src, dst, start + int(lengths.max()), start)
        return self.head(w, final[lengths.cumsum(0) - 1])  # each prompt's last token

    def _fused_rows(self, w: ModelWeights, tokens: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor | None,
                    cache: KVCache, ropes: dict) -> torch.Tensor:
        """Rows of (token, position, slot) through every layer with the fused ops; returns the final-normed hidden
        states (B, C). Each residual add happens inside the next norm's call, and q/k/v go from the projection
        to the attention kernel (RoPE, cache write at the row's slot and position, fp32 q) in one call. All rows
        write their K/V before any attends, so a prefill's rows see their own prompt's earlier tokens."""
        B, H, D = tokens.shape[0], self.num_heads, self.head_dim
        x = self.embed(w, tokens).contiguous()  # (B, C), updated in place by every residual add
        branch = None  # the last residual branch, not yet added to x
        for i, (lw, layer) in enumerate(zip(w.layers, self.plan.layers)):
            q, k, v = lw.qkv(self._add_norm(x, branch, lw.pre_attn_norm))  # (B, H*D), (B, Hkv*D) x2
            q, k = self._qk_norm_rows(lw, q, k)
            if layer.rope is not None:
                cos, sin = ropes[layer.rope]
                q = self.fused.rope_into_cache(q, k, v, cos, sin, positions, cache.k[i], cache.v[i], slots)
            else:  # NoPE layer
                where = torch.arange(B, device=tokens.device) if slots is None else slots
                cache.write_decode(i, where, positions, k.unflatten(-1, (-1, D)), v.unflatten(-1, (-1, D)))
                q = q.unflatten(-1, (H, D)).float()
            attn = self.attention_kernel(q, cache.k[i], cache.v[i], positions, layer.window or 0, self.plan.attn_scale,
                                         self.bf16_dots, slots)
            branch = self._norm_rows(lw.o(attn.view(B, H * D).to(x.dtype)), lw.post_attn_norm)
            h = self._add_norm(x, branch, lw.pre_mlp_norm)
            branch = self._norm_rows(lw.down(self._activated(lw, h)), lw.post_mlp_norm)
        return self._add_norm(x, branch, w.final_norm)

    def _add_norm(self, x: torch.Tensor, branch: torch.Tensor | None, weight: torch.Tensor | None) -> torch.Tensor:
        """x += branch (in place), then x's rows normed by `weight` (x itself without a norm)."""
        if weight is None:
            return x if branch is None else x.add_(branch)
        return self.fused.add_rms_norm(x, branch, weight, self.eps, self.plan.family.norm != "fp32")

    def _norm_rows(self, x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        return self._add_norm(x.contiguous(), None, weight)

    def _qk_norm_rows(self, lw: LayerWeights, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q (B, H*D), k (B, Hkv*D) after the family's q/k norm (per head or over the projection)."""
        if lw.q_norm is None:
            return q, k
        if self.plan.family.qk_norm == "full":
            return self._norm_rows(q, lw.q_norm), self._norm_rows(k, lw.k_norm)
        D = self.head_dim
        return (self._norm_rows(q.reshape(-1, D), lw.q_norm).view(q.shape[0], -1),
                self._norm_rows(k.reshape(-1, D), lw.k_norm).view(k.shape[0], -1))

    def _activated(self, lw: LayerWeights, h: torch.Tensor) -> torch.Tensor:
        """act(gate) * up from the gate/up projection of h."""
        if self.plan.activation == "silu" and lw.gate_up.sizes is not None:
            return self.fused.silu_mul(lw.gate_up.parts[0](h))
        return gated(self.plan.activation, *lw.gate_up(h))

    def _decode_biases(self, positions: torch.Tensor, dtype: torch.dtype) -> dict:
        """{window: (B*Hkv, G, T) additive mask}, one (G, T) block per (row, KV head), built once for all
        layers; T is the longest running row's span, not Tmax."""
        B, Hkv = positions.shape[0], self.num_kv_heads
        G, span = self.num_heads // Hkv, int(positions.max()) + 1
        k_pos = torch.arange(span, device=positions.device)[None]  # (1, T)
        biases = {}
        for window in {layer.window for layer in self.plan.layers}:
            hidden = ~visible(positions[:, None], k_pos, window)  # (B, T)
            bias = torch.zeros((B, span), dtype=dtype, device=positions.device).masked_fill_(hidden, float("-inf"))
            biases[window] = bias[:, None, None].expand(B, Hkv, G, span).reshape(B * Hkv, G, span)
        return biases

    def _bmm_attention(self, q: torch.Tensor, cache: KVCache, layer: int, bias: torch.Tensor) -> torch.Tensor:
        """Decode attention with torch.bmm on the cache in place (where the C++ kernel is not used).
        q: (B, H, D), bias: (B*Hkv, G, T) -> (B*Hkv, G, D)."""
        B, Hkv, D = q.shape[0], self.num_kv_heads, self.head_dim
        G, span = self.num_heads // Hkv, bias.shape[-1]
        # (B*Hkv, T, D) views of the first B slots: a uniform batch stride, so bmm reads them in place.
        keys = cache.k[layer].view(-1, cache.max_len, D)[:B * Hkv, :span]
        values = cache.v[layer].view(-1, cache.max_len, D)[:B * Hkv, :span]
        # Grouped-query attention without repeat_kv: each KV head's G query heads are the rows of
        # one (G, D) block, exactly HF's head h -> KV head h // G mapping.
        scores = torch.baddbmm(bias, q.reshape(B * Hkv, G, D).to(keys.dtype), keys.transpose(1, 2),
                               alpha=self.plan.attn_scale)
        return torch.bmm(scores.softmax(dim=-1), values)
