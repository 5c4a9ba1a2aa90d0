"""Packed (padding-free) scoring equals padded full-sequence scoring: values, entropies and gradients."""
import pytest
import torch

from r1lab.models import TINY_FAMILIES, tiny_model
from r1lab.rl.batch import micro_batches, score_sequences
from r1lab.rl.layout import filler_batch, pack_for_scoring
from r1lab.rl import packed as packed_module
from r1lab.rl.packed import ATTENTION_NAME, packed_micro_batches, score_packed

# Long enough for gemma3_text's sliding window (8) to cut into the prompt and the completions.
PROMPTS = {0: [5, 6, 7, 8, 9, 10, 11, 12, 13], 1: [14, 15], 2: [16, 17, 18, 19]}
PROMPT_OF = [0, 0, 0, 1, 1, 2]
COMPLETIONS = [[20, 21, 22, 23, 24, 25, 26, 27], [28], [29, 30], [31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41], [42],
               [43, 44, 45]]


def _scores_and_grads(model, batch, score, temperature=0.7):
    model.zero_grad()
    logp, entropy = score(model, batch, temperature=temperature, with_entropy=True)
    (logp * batch.completion_mask * torch.linspace(0.5, 1.5, logp.shape[1])).sum().backward()
    by_row = {i: (logp[r], entropy[r], int(batch.completion_mask[r].sum())) for r, i in enumerate(batch.index)}
    return by_row, [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("per_block", [2, 8], ids=["blocks-of-2", "one-block"])
@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
def test_packed_scores_and_gradients_match_padded_sequences(family, per_block, monkeypatch):
    monkeypatch.setattr(packed_module, "COMPLETIONS_PER_BLOCK", per_block)  # 2: rows sorted by length into 3 blocks
    model = tiny_model(family, vocab_size=64)
    padded = micro_batches([PROMPTS[k] for k in PROMPT_OF], COMPLETIONS, 0, size=6)[0]
    packed = packed_micro_batches(PROMPT_OF, PROMPTS, COMPLETIONS, 0, size=6)[0]
    assert packed.input_ids.shape[1] == sum(map(len, PROMPTS.values())) + sum(map(len, COMPLETIONS))  # no padding
    assert len(packed.layout.blocks) == 1 + -(-len(COMPLETIONS) // per_block)  # the prompts' block + completions'

    want, want_grads = _scores_and_grads(model, padded, score_sequences)
    got, got_grads = _scores_and_grads(model, packed, score_packed)
    for i, (logp, entropy, n) in got.items():
        assert n == len(COMPLETIONS[i])
        assert torch.allclose(logp[:n], want[i][0][:n], atol=1e-5), family
        assert torch.allclose(entropy[:n], want[i][1][:n], atol=1e-5), family
        assert torch.all(logp[n:] == 0)
    for g_want, g_got in zip(want_grads, got_grads):
        assert torch.allclose(g_got, g_want, atol=1e-5), family
    assert model.config._attn_implementation != ATTENTION_NAME  # restored after the forward


def test_packed_micro_batches_keep_groups_whole_and_every_row():
    batches = packed_micro_batches(PROMPT_OF, PROMPTS, COMPLETIONS, 0, size=3)
    assert sorted(i for b in batches for i in b.index) == list(range(len(COMPLETIONS)))
    for b in batches:
        owners = {PROMPT_OF[i] for i in b.index}
        assert all(sum(PROMPT_OF[i] == k for i in b.index) == PROMPT_OF.count(k) for k in owners)
        assert b.keep.numel() == b.targets.numel() == int(b.completion_mask.sum())


def test_packed_filler_batch_adds_nothing():
    model = tiny_model("llama", vocab_size=64)
    batches, score = pack_for_scoring([[5, 6]] * 2, [[7, 8], [9]], [0, 1], 2, 0, 4, "packed", torch.device("cpu"))
    assert score is score_packed and len(batches) == 1
    filler = filler_batch(score, 0, torch.device("cpu"))
    logp, _ = score(model, filler, 1.0)
    (logp * filler.completion_mask).sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_empty_completion_is_refused():
    from r1lab.rl.packed import pack_groups_flat

    with pytest.raises(ValueError, match="at least one token"):
        pack_groups_flat([[5, 6]], [[7], []], [0, 0], 0, [0, 1])


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="layout must be one of"):
        pack_for_scoring([[1]], [[2]], [0], 1, 0, 1, "ragged", torch.device("cpu"))


def test_packed_layout_refuses_gradient_checkpointing():
    model = tiny_model("llama", vocab_size=64)
    model.gradient_checkpointing_enable()
    packed = packed_micro_batches(PROMPT_OF, PROMPTS, COMPLETIONS, 0, size=6)[0]
    with pytest.raises(ValueError, match="gradient checkpointing"):
        score_packed(model, packed, 1.0)


def test_packed_attention_softcap_matches_gemma2_eager():
    """Gemma 2 soft-caps attention logits (not a native-engine family, but trainable): the packed path's eager branch."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "gemma2", vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, sliding_window=8, attn_logit_softcapping=5.0, final_logit_softcapping=30.0,
        query_pre_attn_scalar=16, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    padded = micro_batches([PROMPTS[k] for k in PROMPT_OF], COMPLETIONS, 0, size=6)[0]
    packed = packed_micro_batches(PROMPT_OF, PROMPTS, COMPLETIONS, 0, size=6)[0]
    want, want_grads = _scores_and_grads(model, padded, score_sequences)
    got, got_grads = _scores_and_grads(model, packed, score_packed)
    for i, (logp, _, n) in got.items():
        assert torch.allclose(logp[:n], want[i][0][:n], atol=1e-5)
    for g_want, g_got in zip(want_grads, got_grads):
        assert torch.allclose(g_got, g_want, atol=1e-5)
