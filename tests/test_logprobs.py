"""The chunked LM head + log-prob equals the plain (B, T, V) path in value and gradient."""
import pytest
import torch

from r1lab.models import tiny_model
from r1lab.rl.batch import completion_logits, group_micro_batches, micro_batches, score_groups, score_sequences
from r1lab.rl.fused_head import fused_head_logprobs
from r1lab.rl.logprobs import head_logprobs, token_logprobs_and_entropy


def test_entropy_gradient_matches_autograd_of_the_plain_formula():
    torch.manual_seed(0)
    logits = (torch.randn(2, 3, 7, dtype=torch.float64) * 2).requires_grad_()
    tokens = torch.randint(0, 7, (2, 3))
    w_logp, w_ent = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    logp, entropy = token_logprobs_and_entropy(logits, tokens, 0.7, with_entropy=True, entropy_grad=True)
    (logp * w_logp + entropy * w_ent).sum().backward()
    ours, logits.grad = logits.grad.clone(), None
    ref_all = torch.log_softmax(logits / 0.7, -1)
    ref_ent = -(ref_all.exp() * ref_all).sum(-1)
    (ref_all.gather(-1, tokens[..., None]).squeeze(-1) * w_logp + ref_ent * w_ent).sum().backward()
    torch.testing.assert_close(entropy.detach(), ref_ent.detach())
    torch.testing.assert_close(ours, logits.grad)


@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("chunk_bytes,max_rows", [(88, 1024), (4 * 4 * 3, 4), (2**20, 1024)])
@pytest.mark.parametrize("keep", [True, False])
def test_fused_head_equals_the_plain_head_in_value_and_gradient(softcap, chunk_bytes, max_rows, keep, monkeypatch):
    """Blocks of 15 rows x 1 vocabulary entry; 4 rows x 3 (row blocks accumulate the weight's gradient); one block.
    The backward from the forward's kept logits, and from logits recomputed."""
    monkeypatch.setattr("r1lab.rl.fused_head.MAX_BLOCK_ROWS", max_rows)
    monkeypatch.setattr("r1lab.rl.fused_head.KEEP_LOGITS_BYTES", 2**30 if keep else 0)
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 8, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(11, dtype=torch.float64, requires_grad=True)
    tokens = torch.randint(0, 11, (3, 5))
    upstream = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)

    def run(chunked):
        if chunked:
            logp, ent = fused_head_logprobs(hidden, weight, bias, tokens, 0.8, True, True, softcap, chunk_bytes)
        else:
            logits = torch.nn.functional.linear(hidden, weight, bias)
            if softcap is not None:
                logits = torch.tanh(logits / softcap) * softcap
            logp, ent = token_logprobs_and_entropy(logits, tokens, 0.8, True, True)
        (logp * upstream[0] + ent * upstream[1]).sum().backward()
        grads = [t.grad.clone() for t in (hidden, weight, bias)]
        for t in (hidden, weight, bias):
            t.grad = None
        return logp.detach(), ent.detach(), grads

    plain, chunked = run(False), run(True)
    torch.testing.assert_close(chunked[0], plain[0])
    torch.testing.assert_close(chunked[1], plain[1])
    for a, b in zip(chunked[2], plain[2]):
        torch.testing.assert_close(a, b)


def test_fused_head_under_bf16_autocast_matches_the_autocast_head():
    """bf16 matmuls, fp32 softmax, the block gradient rounded to bf16: as autocast runs the model's own head."""
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, requires_grad=True)
    weight = (torch.randn(301, 16) * 0.5).requires_grad_()
    tokens = torch.randint(0, 301, (37,))
    upstream = torch.randn(37)

    def run(fused):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if fused:
                logp, _ = fused_head_logprobs(hidden, weight, None, tokens, chunk_bytes=4 * 37 * 64)
            else:
                logp, _ = token_logprobs_and_entropy(torch.nn.functional.linear(hidden, weight), tokens)
        (logp * upstream).sum().backward()
        grads = [t.grad.clone() for t in (hidden, weight)]
        hidden.grad = weight.grad = None
        return logp.detach(), grads

    (logp, grads), (ref_logp, ref_grads) = run(True), run(False)
    assert logp.dtype == torch.float32 and grads[1].dtype == torch.float32
    torch.testing.assert_close(logp, ref_logp, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=2e-2, rtol=2e-2)


def _grads(model):
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return grads


@pytest.mark.parametrize("grouped", [False, True])
def test_model_scoring_through_the_chunked_head_equals_full_logits(grouped, tokenizer):
    torch.manual_seed(0)
    model = tiny_model("llama", vocab_size=len(tokenizer))
    prompts = {0: [5, 6, 7, 8], 1: [10, 11]}
    prompt_of = [0, 0, 1, 1]
    completions = [[20, 21, 22], [23], [24, 25], [26, 27, 28, 29]]
    if grouped:
        batch, score = group_micro_batches(prompt_of, prompts, completions, 0, size=4)[0], score_groups
    else:
        batch, score = micro_batches([prompts[k] for k in prompt_of], completions, 0, size=4)[0], score_sequences
    weights = torch.randn(batch.completion_mask.shape) * batch.completion_mask

    # the reference: the whole (B, Wc, V) logits tensor, then the one-pass kernel
    if grouped:
        from r1lab.rl.batch import grouped_completion_logits as logits_of
    else:
        logits_of = completion_logits
    ref_logp, ref_ent = token_logprobs_and_entropy(logits_of(model, batch), batch.completion_ids, 0.7, True, True)
    ((ref_logp + 0.1 * ref_ent) * weights).sum().backward()
    ref_grads = _grads(model)

    logp, ent = score(model, batch, 0.7, with_entropy=True, entropy_grad=True, chunk_bytes=4 * len(tokenizer) * 3)
    ((logp + 0.1 * ent) * weights).sum().backward()
    mask = batch.completion_mask.bool()
    torch.testing.assert_close(logp[mask], ref_logp[mask].detach(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ent[mask], ref_ent[mask].detach(), atol=1e-6, rtol=1e-5)
    for a, b in zip(_grads(model), ref_grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_the_model_head_is_restored_after_the_chunked_forward(tokenizer):
    model = tiny_model("llama", vocab_size=len(tokenizer))
    with head_logprobs(model, torch.zeros(1, 2, dtype=torch.long)) as out:
        model(input_ids=torch.tensor([[3, 4]]))
    assert out["logp"].shape == (1, 2)
    assert model(input_ids=torch.tensor([[3, 4]])).logits.shape == (1, 2, len(tokenizer))
