"""Token log-probs (and entropy) of the sampled tokens: the training pass's LM head + log-softmax.

Two ways to the same numbers:
- `token_logprobs_and_entropy(logits, tokens)`: from a (B, T, V) logits tensor, one exp pass.
- `head_logprobs(model, tokens)`: a context manager under which the model's forward returns the
  log-probs instead of logits. The LM head then runs fused with the log-prob (rl.fused_head), over
  blocks of a few MB recomputed in the backward: no (B, T, V) tensor at all (Gemma 3's 262k vocabulary
  makes the head larger than the transformer body).
"""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from r1lab.rl.fused_head import DEFAULT_CHUNK_BYTES, fused_head_logprobs


class _TokenLogprobs(torch.autograd.Function):
    """log softmax(z)[token] with one exp pass over the vocabulary, and the entropy from the same pass.

    The plain way (log_softmax, gather; a second log_softmax and an exp for the entropy; log_softmax's
    backward exponentiating again) makes four passes over a (B, T, V) tensor, which for a 49k vocab
    cost as much as a third of the model's matmuls. Here the forward computes the softmax once, keeps
    it for the backward (grad z = g * (onehot - p)), and reads the entropy off it (lse - sum p z).
    With `entropy_grad` the entropy is differentiable too (an entropy bonus): dH/dz = -p (z - E_p[z]),
    which needs z kept as well.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, tokens: Tensor, temperature: float, with_entropy: bool, entropy_grad: bool):
        z = logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits
        if temperature != 1.0:
            z = z / temperature
        shift = z.amax(dim=-1, keepdim=True)  # (B, T, 1)
        probs = (z - shift).exp_()  # (B, T, V), unnormalised for now
        total = probs.sum(dim=-1, keepdim=True)
        lse = shift + total.log()
        logp = (z.gather(-1, tokens.unsqueeze(-1)) - lse).squeeze(-1)  # (B, T)
        probs.div_(total)
        entropy = expected_z = None
        if with_entropy or entropy_grad:
            expected_z = (probs * z).sum(dim=-1, keepdim=True)  # (B, T, 1)
            entropy = (lse - expected_z).squeeze(-1)
            if not entropy_grad:
                ctx.mark_non_differentiable(entropy)
        ctx.save_for_backward(probs, tokens, *((z, expected_z) if entropy_grad else ()))
        ctx.temperature, ctx.input_dtype = temperature, logits.dtype
        return logp, entropy

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_logp: Tensor, grad_entropy: Tensor | None):
        probs, tokens, *kept = ctx.saved_tensors
        if kept and grad_entropy is not None:  # the entropy's share, before probs is overwritten
            z, expected_z = kept
            entropy_part = probs * (z - expected_z) * -grad_entropy.unsqueeze(-1)
        else:
            entropy_part = None
        grad = probs.mul_(-grad_logp.unsqueeze(-1))  # in place: the saved softmax is not needed again
        grad.scatter_add_(-1, tokens.unsqueeze(-1), grad_logp.unsqueeze(-1))
        if entropy_part is not None:
            grad.add_(entropy_part)
        if ctx.temperature != 1.0:
            grad.div_(ctx.temperature)
        return grad.to(ctx.input_dtype), None, None, None, None


def token_logprobs_and_entropy(logits: Tensor, tokens: Tensor, temperature: float = 1.0,
                               with_entropy: bool = False, entropy_grad: bool = False
                               ) -> tuple[Tensor, Tensor | None]:
    """log softmax(logits / T) at `tokens`, (B, T, V), (B, T) -> (B, T) (fp32 for bf16/fp16 logits),
    and optionally the per-position entropy of softmax(logits / T) (detached unless `entropy_grad`)."""
    return _TokenLogprobs.apply(logits, tokens, temperature, with_entropy, entropy_grad)


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "module", model)  # DDP
    return model.get_base_model() if hasattr(model, "get_base_model") else model  # peft


def output_head(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The model's LM head when it is a plain Linear the chunked path can stand in for, else None."""
    head = unwrapped(model).get_output_embeddings()
    return head if type(head) is torch.nn.Linear else None


@contextlib.contextmanager
def head_logprobs(model: torch.nn.Module, tokens: Tensor, temperature: float = 1.0, with_entropy: bool = False,
                  entropy_grad: bool = False, chunk_bytes: int = DEFAULT_CHUNK_BYTES):
    """Inside, a forward of `model` computes its LM head chunk by chunk straight into log-probs of `tokens`
    (shaped as the positions the head runs on); they land in the yielded dict as "logp" and "entropy",
    and the forward's `logits` is a stand-in. The head runs inside the model's own forward, so DDP and
    FSDP see its weight used as usual. Needs `output_head(model)` (a plain Linear)."""
    head = output_head(model)
    if head is None:
        raise ValueError("head_logprobs needs a model whose output embedding is a plain torch.nn.Linear")
    softcap = getattr(unwrapped(model).config, "final_logit_softcapping", None)
    out: dict[str, Tensor | None] = {}

    def forward(hidden: Tensor) -> Tensor:
        out["logp"], out["entropy"] = fused_head_logprobs(hidden, head.weight, head.bias, tokens, temperature,
                                                          with_entropy, entropy_grad, softcap, chunk_bytes)
        # A stand-in for the logits, outside the graph: the model may soft-cap it (the chunks already did).
        return hidden.new_zeros(hidden.shape[:-1] + (1,))

    head.forward = forward  # an instance attribute: nn.Module.__call__ finds it before the class's
    try:
        yield out
    finally:
        del head.forward
