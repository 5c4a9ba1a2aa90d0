"""SFT: packing layout and masks, reply-only loss, exact gradient accumulation, learning, resume, LoRA, errors."""
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from r1lab import dist
from r1lab.config import ConfigError, load_config
from r1lab.data.base import TaskError
from r1lab.data.prompts import PromptConfig, render
from r1lab.models import tiny_model
from r1lab.sft import trainer as trainer_mod
from r1lab.sft.config import SFTConfig, SFTDataConfig
from r1lab.sft.data import encode_chat, encode_prompt_completion, load_samples
from r1lab.sft.packing import IGNORE, Sample, micro_batches, pack, plan_rows
from r1lab.sft.trainer import accumulate_gradients, forward_logits, target_loss_sum, train_sft

X = IGNORE


def sample(ids, first_target):
    """ids with the tokens from `first_target` on as targets."""
    return Sample(list(ids), [X] * first_target + list(ids[first_target:]))


def random_samples(lengths, vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [sample(torch.randint(5, vocab, (n,), generator=g).tolist(), n // 2) for n in lengths]


# ---------------------------------------------------------------- packing (no model)
def test_plan_rows_is_first_fit_decreasing():
    # by length: 6(#4) 5(#0) 4(#2) 3(#1) 2(#3); 3 fits beside 5, 2 beside 6, 4 stays alone
    assert plan_rows([5, 3, 4, 2, 6], 8) == [[4, 3], [0, 1], [2]]
    assert plan_rows([5, 3, 4, 2, 6], 8, packing=False) == [[4], [0], [2], [1], [3]]
    with pytest.raises(ValueError, match="longer than max_len=8"):
        plan_rows([9, 1], 8)


def test_pack_layout_restarts_positions_and_masks_labels():
    a = Sample([10, 11, 12, 13], [X, X, 12, 13])
    b = Sample([20, 21, 22], [X, 21, 22])
    c = Sample([30, 31], [30, 31])  # a label on the first token can never be trained: nothing precedes it
    batch = pack([a, b, c], max_len=7, pad_id=0)
    assert batch.samples == [[0, 1], [2]]
    assert batch.boundaries == [[(0, 4), (4, 7)], [(0, 2)]]
    assert batch.input_ids.tolist() == [[10, 11, 12, 13, 20, 21, 22], [30, 31, 0, 0, 0, 0, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 0, 1, 2], [0, 1, 0, 1, 2, 3, 4]]
    assert batch.labels.tolist() == [[X, X, 12, 13, X, 21, 22], [X, 31, X, X, X, X, X]]
    assert batch.attention_mask is None
    assert (batch.num_targets, batch.num_tokens) == (5, 9)


def test_unpacked_rows_are_right_padded_with_an_attention_mask():
    a = Sample([10, 11, 12], [X, X, 12])
    b = Sample([20, 21], [X, 21])
    batch = pack([a, b], max_len=7, pad_id=0, packing=False)
    assert batch.input_ids.tolist() == [[10, 11, 12], [20, 21, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch.labels.tolist() == [[X, X, 12], [X, 21, X]]
    assert batch.position_ids.tolist() == [[0, 1, 2], [0, 1, 2]]


def test_micro_batches_stay_within_the_token_budget():
    samples = [sample([5] * n, 1) for n in (4, 4, 4, 4, 3)]
    batches = micro_batches(samples, max_len=4, micro_batch_tokens=8, pad_id=0)
    assert [tuple(b.input_ids.shape) for b in batches] == [(2, 4), (2, 4), (1, 3)]
    assert sorted(i for b in batches for row in b.samples for i in row) == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------- no attention across packed samples
@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logits_equal_each_sample_alone(family, attn):
    model = tiny_model(family, vocab_size=64, attn_implementation=attn).eval()
    samples = random_samples([7, 5, 4, 3, 2], vocab=64)
    batch = pack(samples, max_len=10, pad_id=0)  # rows [7+3], [5+4], [2 + 8 padding]
    assert [len(r) for r in batch.samples] == [2, 2, 1]
    with torch.no_grad():
        packed = forward_logits(model, batch)
        for r, (row, spans) in enumerate(zip(batch.samples, batch.boundaries)):
            for i, (start, end) in zip(row, spans):
                alone = model(torch.tensor([samples[i].input_ids])).logits[0]
                torch.testing.assert_close(packed[r, start:end], alone, atol=1e-5, rtol=0)
        # the check has teeth: with positions running on, the second sample of row 0 sees the first
        flat = model(batch.input_ids[:1], use_cache=False).logits[0, 7:10]
        alone = model(torch.tensor([samples[batch.samples[0][1]].input_ids])).logits[0]
        assert (flat - alone).abs().max() > 1e-2


def test_unpacked_padded_logits_equal_each_sample_alone(model):
    samples = random_samples([6, 3], vocab=model.config.vocab_size)
    batch = pack(samples, max_len=8, pad_id=0, packing=False)
    with torch.no_grad():
        logits = forward_logits(model, batch)
        for r, ((start, end),) in enumerate(batch.boundaries):
            alone = model(torch.tensor([samples[batch.samples[r][0]].input_ids])).logits[0]
            torch.testing.assert_close(logits[r, start:end], alone, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- which tokens are trained
def test_prompt_completion_targets_are_the_reply_without_the_prefill(tokenizer):
    cfg = PromptConfig(style="chat", system="", example=False, prefill="<think>")
    s = encode_prompt_completion("2+2?", "<think> 4 </think> <answer>4</answer>", tokenizer, cfg)
    prompt = render("2+2?", cfg, tokenizer)
    assert prompt.endswith("assistant\n<think>")
    assert tokenizer.decode(s.input_ids) == prompt + " 4 </think> <answer>4</answer><|im_end|>"  # prefill once
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert s.labels[:n_prompt] == [X] * n_prompt
    assert tokenizer.decode(s.labels[n_prompt:]) == " 4 </think> <answer>4</answer><|im_end|>"
    verbatim = encode_prompt_completion("Q: 2+2?\nA:", " 4", tokenizer, cfg, render_prompt=False)
    assert tokenizer.decode(verbatim.input_ids) == "Q: 2+2?\nA: 4<|im_end|>"
    assert tokenizer.decode([t for t in verbatim.labels if t != X]) == " 4<|im_end|>"


def test_chat_loss_covers_assistant_turns_only(tokenizer):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "yo"}, {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"}]
    s = encode_chat(messages, tokenizer)
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert tokenizer.decode(s.input_ids) == text.removesuffix("\n")  # nothing after the last target is kept
    # spans, char tokenizer (1 token per char, specials 1 token): "yo<|im_end|>" and "4<|im_end|>"
    targets = [i for i, t in enumerate(s.labels) if t != X]
    start_yo = len(tokenizer("<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                             "<|im_start|>assistant\n", add_special_tokens=False)["input_ids"])
    assert targets == [start_yo, start_yo + 1, start_yo + 2, len(s.input_ids) - 2, len(s.input_ids) - 1]
    assert tokenizer.decode([s.labels[i] for i in targets]) == "yo<|im_end|>4<|im_end|>"


def test_loss_counts_only_target_tokens(model):
    s = sample(list(range(10, 22)), 8)  # 8 context tokens, 4 targets
    batch = pack([s], max_len=16, pad_id=0)
    with torch.no_grad():
        logits = model(torch.tensor([s.input_ids])).logits[0]  # (12, V)
        logp = logits.log_softmax(-1)
        expected = -sum(logp[t - 1, s.input_ids[t]] for t in range(8, 12))
        assert torch.allclose(target_loss_sum(model, batch), expected, atol=1e-5)
        # the context tokens are in the forward but not in the sum: unmasking one adds exactly its term
        assert batch.num_targets == 4
        batch.labels[0, 3] = s.input_ids[3]
        assert torch.allclose(target_loss_sum(model, batch), expected - logp[2, s.input_ids[3]], atol=1e-5)


# ---------------------------------------------------------------- exact accumulation
def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_micro_batch_accumulation_equals_one_big_batch(model):
    samples = random_samples([9, 7, 6, 5, 4, 4, 3, 2], vocab=model.config.vocab_size)
    total = sum(s.num_targets for s in samples)

    def grads_with(batches):
        model.zero_grad(set_to_none=True)
        loss = accumulate_gradients(model, batches, total)
        return loss, _grads(model)

    one_loss, one = grads_with(micro_batches(samples, 16, 10_000, pad_id=0))
    assert len(micro_batches(samples, 16, 10_000, pad_id=0)) == 1
    small = micro_batches(samples, 10, 10, pad_id=0)
    assert len(small) >= 4
    small_loss, acc = grads_with(small)
    unpacked_loss, unpacked = grads_with(micro_batches(samples, 16, 20, pad_id=0, packing=False))
    # reference: the plain mean token CE over the targets, each sample run alone
    model.zero_grad(set_to_none=True)
    ref = sum(F.cross_entropy(model(torch.tensor([s.input_ids])).logits[0, :-1], torch.tensor(s.labels[1:]),
                              ignore_index=X, reduction="sum") for s in samples) / total
    ref.backward()
    for loss in (one_loss, small_loss, unpacked_loss):
        assert loss == pytest.approx(ref.item(), abs=1e-6)
    for other in (acc, unpacked, _grads(model)):
        for name in one:
            torch.testing.assert_close(other[name], one[name], atol=1e-6, rtol=0)


def test_bf16_autocast_loss_is_close_to_fp32(model):
    batch = pack(random_samples([9, 7, 5], vocab=model.config.vocab_size), 16, pad_id=0)
    with torch.no_grad():
        full, half = target_loss_sum(model, batch), target_loss_sum(model, batch, bf16=True)
    assert full != half and abs(half - full) < 0.02 * full


def test_rank_shares_sum_to_the_one_process_gradient(model, monkeypatch):
    """Two simulated ranks: each takes samples j % 2 of the step, divides by the global count; the summed
    gradients (what dist.sync_gradients all-reduces) equal the one-process gradient."""
    cfg = load_config(SFTConfig, None, ["train.batch_size=6", "train.max_seq_len=16", "train.micro_batch_tokens=16"])
    samples = random_samples([9, 7, 6, 5, 4, 3, 2], vocab=model.config.vocab_size)
    trainer = trainer_mod.SFTTrainer(cfg, model, None, samples)

    def step_grads(share):
        model.zero_grad(set_to_none=True)
        accumulate_gradients(model, micro_batches(share, 16, 16, pad_id=0), total)
        return _grads(model)

    whole = trainer.my_samples(2)
    total = sum(s.num_targets for s in whole)
    single = step_grads(whole)
    monkeypatch.setattr(dist, "world_size", lambda: 2)
    shares = []
    for r in (0, 1):
        monkeypatch.setattr(dist, "rank", lambda r=r: r)
        shares.append(trainer.my_samples(2))
    assert [len(s) for s in shares] == [3, 3] and shares[0][0] is whole[0] and shares[1][0] is whole[1]
    g0, g1 = step_grads(shares[0]), step_grads(shares[1])
    for name in single:
        torch.testing.assert_close(g0[name] + g1[name], single[name], atol=1e-6, rtol=0)


# ---------------------------------------------------------------- runs
QA = [("2+2?", "<think>2+2=4</think><answer>4</answer>"), ("3+5?", "<think>3+5=8</think><answer>8</answer>"),
      ("7-1?", "<think>7-1=6</think><answer>6</answer>"), ("1+1?", "<think>1+1=2</think><answer>2</answer>")]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_sft_config(model_dir, data, out, **extra) -> SFTConfig:
    overrides = [f"model.name={model_dir}", f"data.path={data}", f"run.output_dir={out}", "prompt.example=false",
                 "prompt.system=''", "train.batch_size=4", "train.max_seq_len=128", "train.micro_batch_tokens=128"]
    return load_config(SFTConfig, None, overrides + [f"{k}={v}" for k, v in extra.items()])


def _comparable(records):
    return [{k: v for k, v in r.items() if not k.startswith("time/") and k != "tokens_per_s"} for r in records]


def test_tiny_model_memorises_four_samples(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": q, "completion": c} for q, c in QA])
    cfg = tiny_sft_config(tiny_model_dir, data, tmp_path / "run", **{
        "train.steps": 30, "train.lr": 3e-3, "train.lr_schedule": "constant", "run.checkpoint_every": 30,
        "run.plot_every": 30})
    run = train_sft(cfg, progress=False)
    metrics = run.read_metrics()
    assert [m["step"] for m in metrics] == list(range(1, 31))
    first, last = metrics[0]["loss"], metrics[-1]["loss"]
    assert first > 3.0  # about ln(vocab) for a random model
    assert last < 0.25 * first, f"loss went {first:.3f} -> {last:.3f}"
    # each reply less its "<think>" prefill is "2+2=4</think><answer>4</answer>": 31 chars, + EOS
    assert metrics[0]["target_tokens"] == 4 * 32 and metrics[0]["epoch"] == 1.0
    for key in ("loss", "target_tokens", "tokens", "tokens_per_s", "lr", "grad_norm", "epoch", "truncated_samples",
                "pack_fill", "time/step"):
        assert key in metrics[-1], key
    assert {"config.yaml", "metrics.jsonl", "plot.png", "checkpoints"} <= {p.name for p in run.root.iterdir()}
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(run.latest_checkpoint())  # a plain transformers checkpoint
    with pytest.raises(FileExistsError, match="--resume"):
        train_sft(cfg, progress=False)


def test_resume_after_a_kill_matches_an_uninterrupted_run(tiny_model_dir, tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": q, "completion": c} for q, c in QA[:3]])
    common = {"train.steps": 5, "train.batch_size": 2, "train.lr": 1e-3, "train.warmup_steps": 1,
              "run.checkpoint_every": 2, "run.plot_every": 0}
    straight = train_sft(tiny_sft_config(tiny_model_dir, data, tmp_path / "a", **common), progress=False)

    real_step = trainer_mod.SFTTrainer.train_step

    def dies_at_step_4(self):
        if self.step == 3:
            raise KeyboardInterrupt("killed")
        return real_step(self)

    monkeypatch.setattr(trainer_mod.SFTTrainer, "train_step", dies_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train_sft(tiny_sft_config(tiny_model_dir, data, tmp_path / "b", **common), progress=False)
    monkeypatch.setattr(trainer_mod.SFTTrainer, "train_step", real_step)
    cfg_b = tiny_sft_config(tiny_model_dir, data, tmp_path / "b", **common)
    resumed = train_sft(cfg_b, resume=True, progress=False)

    assert _comparable(resumed.read_metrics()) == _comparable(straight.read_metrics())
    final_a = load_file(straight.latest_checkpoint() / "model.safetensors")
    final_b = load_file(resumed.latest_checkpoint() / "model.safetensors")
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    assert train_sft(cfg_b, resume=True, progress=False).read_metrics() == resumed.read_metrics()  # finished: no-op


def test_lora_run_trains_only_adapters(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": q},
                                                               {"role": "assistant", "content": c}]} for q, c in QA])
    # max_seq_len 40 cuts every sample (~23 template tokens + 38-char replies): counted, still trained on
    cfg = tiny_sft_config(tiny_model_dir, data, tmp_path / "run", **{"train.steps": 2, "train.lr": 1e-2,
                                                                      "model.lora_r": 4, "run.plot_every": 0,
                                                                      "train.max_seq_len": 40})
    run = train_sft(cfg, progress=False)
    assert [m["truncated_samples"] for m in run.read_metrics()] == [4, 4]
    assert all(m["target_tokens"] > 0 for m in run.read_metrics())
    ckpt = run.latest_checkpoint()
    assert not (ckpt / "model.safetensors").exists()
    adapters = load_file(ckpt / "adapter_model.safetensors")
    assert adapters and all("lora_" in k for k in adapters)
    assert any(v.abs().sum() > 0 for k, v in adapters.items() if "lora_B" in k)  # B starts at zero: it moved


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("lines, where, message", [
    (['{"prompt": "a", "completion": "b"}', '{"prompt": "a", '], ":2:", "not valid JSON"),
    (['{"question": "a", "answer": "b"}'], ":1:", "expected a 'messages' list"),
    (['{"prompt": "a", "completion": "b"}', '{"messages": [{"role": "user", "content": "hi"}]}'], ":2:",
     "no assistant message"),
    (['{"messages": [{"role": "user"}]}'], ":1:", r"messages\[0\] must be an object"),
    (['{"prompt": "a", "completion": 3}'], ":1:", "'completion' must be a string"),
    (["", "  "], "", "no rows"),
])
def test_bad_rows_name_file_and_line(tokenizer, tmp_path, lines, where, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskError, match=message) as err:
        load_samples(SFTDataConfig(path=str(path)), PromptConfig(system="", example=False), tokenizer, 64)
    assert f"{path}{where}" in str(err.value)


def test_long_samples_are_cut_from_the_right(tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "long.jsonl", [{"prompt": "a", "completion": "x" * 100},
                                                 {"prompt": "a", "completion": "y"}])
    cfg = PromptConfig(system="", example=False, prefill="")
    long, short = load_samples(SFTDataConfig(path=str(path)), cfg, tokenizer, 32)
    assert (long.truncated, len(long.input_ids), short.truncated) == (True, 32, False)
    # prompt: <|im_start|> "user\n"(5) "a" <|im_end|> "\n" <|im_start|> "assistant\n"(10) = 20 tokens; 12 x's fit
    assert tokenizer.decode(long.input_ids) == "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n" + "x" * 12


def test_chat_template_that_rewrites_history_is_refused(tokenizer):
    tokenizer.chat_template = ("{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}[old]"
                               "{% else %}{{ m['content'] }}{% endif %}{% endfor %}"
                               "{% if add_generation_prompt %}>{% endif %}")
    two_turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                 {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]
    with pytest.raises(ValueError, match="renders message 1 differently"):
        encode_chat(two_turns, tokenizer)


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="train.micro_batch_tokens"):
        load_config(SFTConfig, None, ["train.max_seq_len=2048", "train.micro_batch_tokens=1024"])
    with pytest.raises(ConfigError, match="data.format"):
        load_config(SFTConfig, None, ["data.format=parquet"])
    cfg = load_config(SFTConfig, "recipes/sft_smollm2.yaml")
    assert cfg.model.name == "smollm2-135m" and cfg.train.packing


def test_cli_maps_flags_and_reports_bad_data(tiny_model_dir, tmp_path):
    import typer
    from typer.testing import CliRunner

    from r1lab.cli.train import sft

    app = typer.Typer()
    app.command()(sft)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n')
    result = CliRunner().invoke(app, ["--model", tiny_model_dir, "--data", str(bad), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert f"{bad}:1:" in " ".join(result.output.split())
    good = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": q, "completion": c} for q, c in QA])
    result = CliRunner().invoke(app, ["--model", tiny_model_dir, "--data", str(good), "--epochs", "0.5",
                                      "-o", str(tmp_path / "ok"), "-s", "train.batch_size=2",
                                      "-s", "prompt.example=false", "-s", "run.plot_every=0"])
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (tmp_path / "ok" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1]  # 0.5 epochs of 4 samples at 2 per step
    assert "example: false" in (tmp_path / "ok" / "config.yaml").read_text()
