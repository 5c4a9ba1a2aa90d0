"""Shared-prompt scoring equals plain full-sequence scoring, values and gradients."""
import pytest
import torch

from r1lab.rl.batch import group_micro_batches, micro_batches, score_groups, score_sequences


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_grouped_forward_matches_full_sequences(family, tokenizer):
    from r1lab.models import tiny_model

    model = tiny_model(family, vocab_size=len(tokenizer))
    prompts = {0: [5, 6, 7, 8, 9], 1: [10, 11]}
    prompt_of = [0, 0, 0, 1, 1]
    completions = [[20, 21, 22], [23], [24, 25], [26, 27, 28, 29], [30]]
    full = micro_batches([prompts[k] for k in prompt_of], completions, 0, size=5)[0]
    grouped = group_micro_batches(prompt_of, prompts, completions, 0, size=5)[0]

    logp_full, ent_full = score_sequences(model, full, temperature=0.7, with_entropy=True)
    (logp_full * full.completion_mask).sum().backward()
    grads_full = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logp_grp, ent_grp = score_groups(model, grouped, temperature=0.7, with_entropy=True)
    (logp_grp * grouped.completion_mask).sum().backward()

    # rows come back in different orders: compare per original index
    by_full = {i: (logp_full[r], full.completion_mask[r]) for r, i in enumerate(full.index)}
    for r, i in enumerate(grouped.index):
        want, mask = by_full[i]
        n = int(mask.sum())
        assert torch.allclose(logp_grp[r, :n], want[:n], atol=1e-5)
    for g_full, p in zip(grads_full, model.parameters()):
        assert torch.allclose(p.grad, g_full, atol=1e-5)


def test_group_micro_batches_keep_groups_whole():
    prompts = {0: [1, 2], 1: [3], 2: [4, 5, 6]}
    prompt_of = [0, 0, 1, 1, 2, 2]
    batches = group_micro_batches(prompt_of, prompts, [[7]] * 6, 0, size=4)
    assert sorted(i for b in batches for i in b.index) == list(range(6))
    for b in batches:
        owners = {prompt_of[i] for i in b.index}
        assert all(sum(prompt_of[i] == k for i in b.index) == 2 for k in owners)


def test_micro_batches_sized_in_tokens_hold_whole_groups_within_the_budget():
    from r1lab.rl.batch import chunked, micro_batches

    prompts = {0: [1] * 10, 1: [2] * 10, 2: [3] * 10}
    prompt_of = [0, 0, 1, 1, 2, 2]
    completions = [[7] * 5, [7] * 5, [7] * 5, [7] * 5, [7] * 40, [7] * 40]  # groups cost 20, 20, 90 tokens
    batches = group_micro_batches(prompt_of, prompts, completions, 0, size=1, tokens=45)
    # the two short groups share a micro-batch (40 tokens); the long one, over budget alone, gets its own
    assert sorted(sorted(b.index) for b in batches) == [[0, 1, 2, 3], [4, 5]]
    assert chunked([5, 5, 5], sum, 10) == [[5, 5], [5]] and chunked([11, 1], sum, 10) == [[11], [1]]
    # padded layout: rows x the longest row of the micro-batch
    rows = micro_batches([[1] * 10] * 6, completions, 0, size=1, tokens=60)
    assert [sorted(b.index) for b in rows] == [[0, 1, 2, 3], [4], [5]]
