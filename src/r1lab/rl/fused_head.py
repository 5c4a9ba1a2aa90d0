"""The training LM head fused with the log-prob of the sampled token: hidden states in, log-probs out.

    logp[n] = log softmax(linear(hidden[n], W, b) / T)[token[n]]      (and the entropy of that softmax)

without an fp32 (N, V) tensor. The head runs over blocks of rows x vocabulary slices of at most `chunk_bytes`
fp32 logits (a few MB: the block's softmax stays in cache, csrc/head_logprobs.cpp doing it in one pass a row);
the forward keeps a running max and sum per row (an online logsumexp), the backward turns each block's logits
into that block's gradient, straight into the weight's gradient slice. The blocks' logits are kept in the
compute dtype (bf16: half of what the unfused head's fp32 logits took) up to KEEP_LOGITS_BYTES in all, else
recomputed from the saved hidden states (Gemma 3's 262k vocabulary would otherwise take more memory than the
transformer body).

Numerics as the model's own head: the matmuls in the compute dtype (autocast's, else the weight's), the
softmax in fp32, each block's gradient rounded to the compute dtype before its matmuls, as autograd's cast
of the logits would.
"""
from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_CHUNK_BYTES = 8 * 2**20  # fp32 logits per block; measured (benchmarks/train_pass.py)
MAX_BLOCK_ROWS = 1024  # rows per block: the weight gradient accumulates once per row block
# The forward keeps its blocks' logits (compute dtype) for the backward up to this much in all, instead of
# recomputing them: one head matmul less (~15 % of the head's time, config a), within the memory the head held
# before it was fused (fp32 logits of up to 256 MB); past it, recomputed (a 262k vocabulary, long micro-batches).
KEEP_LOGITS_BYTES = 256 * 2**20


def _blocks(rows: int, vocab: int, chunk_bytes: int) -> tuple[int, int]:
    block_rows = min(rows, MAX_BLOCK_ROWS)
    return block_rows, max(1, min(vocab, chunk_bytes // (4 * block_rows)))


def _kernel(dtype: torch.dtype, softcap: float | None):
    """The C++ per-block softmax (csrc/head_logprobs.cpp) where it applies: fp32/bf16 logits, no soft-capping."""
    if dtype not in (torch.float32, torch.bfloat16) or softcap is not None:
        return None
    from r1lab.rollout.decode_kernel import head_logprobs

    return head_logprobs()


def _logits(h: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    logits = h @ w.T
    return logits.add_(b) if b is not None else logits


def _local(tokens: Tensor, v0: int, v1: int) -> Tensor:
    """Each row's token as an index into the vocabulary slice [v0, v1), -1 where it lies outside."""
    return torch.where((tokens >= v0) & (tokens < v1), tokens - v0, -1)


def _scaled(logits: Tensor, temperature: float, softcap: float | None) -> tuple[Tensor, Tensor | None]:
    """The logits as the loss sees them (softcapped, / temperature, fp32 or fp64) and the softcapped ones."""
    z = logits.float() if logits.dtype != torch.float64 else logits
    capped = None
    if softcap is not None:  # Gemma-style final logit soft-capping, as the model's forward applies it
        z = capped = torch.tanh(z / softcap).mul_(softcap)
    return (z / temperature if temperature != 1.0 else z), capped


def _torch_stats(logits, local, temperature, softcap, peak, total, weighted, token_z) -> None:
    """block_stats of csrc/head_logprobs.cpp in torch ops (any dtype, soft-capping)."""
    z, _ = _scaled(logits, temperature, softcap)
    new_peak = torch.maximum(peak, z.amax(dim=1))
    rescale = (peak - new_peak).exp_()
    e = (z - new_peak.unsqueeze(1)).exp_()
    total.mul_(rescale).add_(e.sum(dim=1))
    if weighted is not None:
        weighted.mul_(rescale).add_((e * z).sum(dim=1))
    peak.copy_(new_peak)
    here = (local >= 0).nonzero().squeeze(1)
    token_z[here] = z[here, local[here]]


def _torch_grad(logits, local, temperature, softcap, lse, g, g_entropy, expected_z) -> Tensor:
    """block_grad of csrc/head_logprobs.cpp in torch ops (any dtype, soft-capping)."""
    z, capped = _scaled(logits, temperature, softcap)
    p = (z - lse.unsqueeze(1)).exp_()
    if g_entropy is not None:  # dH/dz = -p (z - E_p[z])
        dz = (z - expected_z.unsqueeze(1)).mul_(g_entropy.unsqueeze(1)).add_(g.unsqueeze(1)).mul_(p).neg_()
    else:
        dz = p.mul_(-g.unsqueeze(1))  # d logp / dz = onehot - p
    here = (local >= 0).nonzero().squeeze(1)
    dz[here, local[here]] += g[here]
    if temperature != 1.0:
        dz /= temperature
    if capped is not None:  # d(c tanh(l / c))/dl = 1 - (capped / c)^2
        dz *= 1 - (capped / softcap) ** 2
    return dz.to(logits.dtype)


class _FusedHeadLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, tokens, temperature, with_entropy, entropy_grad, softcap, chunk_bytes):
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        h, w = hidden.to(dtype), weight.to(dtype)
        b = bias.to(dtype) if bias is not None else None
        n, vocab = h.shape[0], w.shape[0]
        block_rows, block_vocab = _blocks(n, vocab, chunk_bytes)
        kernel = _kernel(dtype, softcap) if device == "cpu" else None
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        lse, token_z = torch.empty(n, dtype=acc), torch.zeros(n, dtype=acc)
        entropy_too = with_entropy or entropy_grad
        expected_z = torch.empty(n, dtype=acc) if entropy_too else None
        keep = n * vocab * h.element_size() <= KEEP_LOGITS_BYTES
        kept = []
        with torch.autocast(device, enabled=False):
            for r0 in range(0, n, block_rows):
                r1 = min(n, r0 + block_rows)
                peak = torch.full((r1 - r0,), -float("inf"), dtype=acc)
                total = torch.zeros(r1 - r0, dtype=acc)
                weighted = torch.zeros(r1 - r0, dtype=acc) if entropy_too else None  # sum exp(z - peak) z
                for v0 in range(0, vocab, block_vocab):
                    v1 = min(vocab, v0 + block_vocab)
                    logits = _logits(h[r0:r1], w[v0:v1], b[v0:v1] if b is not None else None)
                    local = _local(tokens[r0:r1], v0, v1)
                    if keep:
                        kept.append(logits)
                    if kernel is not None:
                        kernel.block_stats(logits, local, 1.0 / temperature, peak, total,
                                           weighted if weighted is not None else torch.empty(0), token_z[r0:r1])
                    else:
                        _torch_stats(logits, local, temperature, softcap, peak, total, weighted, token_z[r0:r1])
                lse[r0:r1] = peak + total.log()
                if expected_z is not None:
                    expected_z[r0:r1] = weighted / total
        logp = token_z - lse
        entropy = lse - expected_z if expected_z is not None else None
        if entropy is not None and not entropy_grad:
            ctx.mark_non_differentiable(entropy)
        ctx.save_for_backward(h, w, b, tokens, lse, expected_z)
        ctx.kept = kept  # intermediates, not inputs or outputs: no version check needed
        ctx.args = temperature, softcap, chunk_bytes, hidden.dtype, weight.dtype, entropy_grad
        return logp, entropy

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_logp, grad_entropy):
        h, w, b, tokens, lse, expected_z = ctx.saved_tensors
        temperature, softcap, chunk_bytes, hidden_dtype, weight_dtype, entropy_grad = ctx.args
        n, vocab = h.shape[0], w.shape[0]
        block_rows, block_vocab = _blocks(n, vocab, chunk_bytes)
        kernel = _kernel(h.dtype, softcap) if h.device.type == "cpu" else None
        acc = lse.dtype
        g = grad_logp.to(acc).contiguous() if grad_logp is not None else torch.zeros(n, dtype=acc)
        g_ent = grad_entropy.to(acc).contiguous() if entropy_grad and grad_entropy is not None else None
        # Written block by block; zero-filled only where a second row block adds to the first
        grad_h = torch.empty(h.shape, dtype=acc) if ctx.needs_input_grad[0] else None
        grad_w = (torch.zeros if n > block_rows else torch.empty)(w.shape, dtype=acc) if ctx.needs_input_grad[1] else None
        grad_b = torch.zeros(vocab, dtype=acc) if b is not None and ctx.needs_input_grad[2] else None
        kept = iter(ctx.kept)
        for r0 in range(0, n, block_rows):
            r1 = min(n, r0 + block_rows)
            rows = slice(r0, r1)
            for v0 in range(0, vocab, block_vocab):
                v1 = min(vocab, v0 + block_vocab)
                logits = next(kept, None)
                if logits is None:
                    logits = _logits(h[rows], w[v0:v1], b[v0:v1] if b is not None else None)
                local = _local(tokens[rows], v0, v1)
                if kernel is not None:
                    empty = torch.empty(0)
                    dl = kernel.block_grad(logits, local, 1.0 / temperature, lse[rows], g[rows],
                                           g_ent[rows] if g_ent is not None else empty,
                                           expected_z[rows] if g_ent is not None else empty)
                else:
                    dl = _torch_grad(logits, local, temperature, softcap, lse[rows], g[rows],
                                     g_ent[rows] if g_ent is not None else None,
                                     expected_z[rows] if g_ent is not None else None)
                if grad_h is not None:
                    if v0 == 0:
                        grad_h[rows] = dl @ w[v0:v1]
                    else:
                        grad_h[rows] += dl @ w[v0:v1]
                if grad_w is not None:
                    if r0 == 0 and n <= block_rows:
                        grad_w[v0:v1] = dl.T @ h[rows]
                    else:
                        grad_w[v0:v1] += dl.T @ h[rows]
                if grad_b is not None:
                    grad_b[v0:v1] += dl.sum(dim=0)
        return (grad_h.to(hidden_dtype) if grad_h is not None else None,
                grad_w.to(weight_dtype) if grad_w is not None else None,
                grad_b.to(b.dtype) if grad_b is not None else None) + (None,) * 6


def fused_head_logprobs(hidden: Tensor, weight: Tensor, bias: Tensor | None, tokens: Tensor,
                        temperature: float = 1.0, with_entropy: bool = False, entropy_grad: bool = False,
                        softcap: float | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES
                        ) -> tuple[Tensor, Tensor | None]:
    """`token_logprobs_and_entropy(linear(hidden, weight, bias), tokens)` without the logits: hidden (..., H),
    tokens (...) -> (...) log-probs (fp32, fp64 for fp64 inputs) and the entropy (None unless asked for;
    differentiable with `entropy_grad`)."""
    shape = tokens.shape
    logp, entropy = _FusedHeadLogprobs.apply(hidden.reshape(-1, hidden.shape[-1]), weight, bias, tokens.reshape(-1),
                                             temperature, with_entropy, entropy_grad, softcap, chunk_bytes)
    return logp.view(shape), entropy.view(shape) if entropy is not None else None
