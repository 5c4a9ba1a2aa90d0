"""The R1-Zero loop end to end on a tiny model: it learns, it resumes exactly, it writes its run dir."""
import json

import pytest
import torch
from safetensors.torch import load_file

from r1lab.config import load_config
from r1lab.rewards import register_reward
from r1lab.rl import trainer as trainer_mod
from r1lab.rl.config import ZeroConfig
from r1lab.rl.trainer import train_zero


@register_reward("test_says_x")
def says_x(completion: str, **row) -> float:
    generated = completion.removeprefix("<think>")
    return generated.count("x") / max(len(generated), 1)


def tiny_config(model_dir, out, **extra) -> ZeroConfig:
    overrides = [
        f"model.name={model_dir}", f"run.output_dir={out}", "task.train_size=64", "task.test_size=8",
        "task.kwargs={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 1}",
        "prompt.example=false", "prompt.system=''", "grpo.max_new_tokens=8", "grpo.prompts_per_step=2",
        "grpo.group_size=4", "run.eval_size=4", "run.samples_per_step=2",
    ]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    return load_config(ZeroConfig, None, overrides)


def test_tiny_model_learns_a_trivial_reward(tiny_model_dir, tmp_path):
    """Proof that the gradient points the right way: reward = share of 'x' characters emitted."""
    cfg = tiny_config(tiny_model_dir, tmp_path / "run", **{
        "rewards": "{test_says_x: 1.0}", "grpo.steps": 40, "grpo.lr": 3e-3, "grpo.prompts_per_step": 4,
        "grpo.group_size": 8, "run.eval_every": 0, "run.checkpoint_every": 1000, "run.plot_every": 0})
    run = train_zero(cfg, progress=False)
    rewards = [m["reward/test_says_x"] for m in run.read_metrics()]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert first < 0.1
    assert last > 0.5, f"reward went {first:.3f} -> {last:.3f}"


def _comparable(records):
    return [{k: v for k, v in r.items() if not k.startswith("time/") and k != "tokens_per_s"} for r in records]


def test_resume_after_a_kill_matches_an_uninterrupted_run(tiny_model_dir, tmp_path, monkeypatch):
    common = {"grpo.steps": 5, "grpo.lr": 1e-3, "run.checkpoint_every": 2, "run.eval_every": 2,
              "rewards": "{test_says_x: 1.0, format_partial: 0.5}", "grpo.mu": 2, "grpo.beta": 0.05}
    straight = train_zero(tiny_config(tiny_model_dir, tmp_path / "a", **common), progress=False)

    real_step = trainer_mod.GRPOTrainer.train_step

    def dies_at_step_4(self):
        if self.step == 3:
            raise KeyboardInterrupt("killed")
        return real_step(self)

    monkeypatch.setattr(trainer_mod.GRPOTrainer, "train_step", dies_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train_zero(tiny_config(tiny_model_dir, tmp_path / "b", **common), progress=False)
    monkeypatch.setattr(trainer_mod.GRPOTrainer, "train_step", real_step)
    resumed = train_zero(tiny_config(tiny_model_dir, tmp_path / "b", **common), resume=True, progress=False)

    assert _comparable(resumed.read_metrics()) == _comparable(straight.read_metrics())
    final_a = load_file(straight.latest_checkpoint() / "model.safetensors")
    final_b = load_file(resumed.latest_checkpoint() / "model.safetensors")
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


@pytest.mark.parametrize("smaller", [{"grpo.micro_batch_size": 2}, {"grpo.micro_batch_tokens": 1}])  # 1: a group each
def test_micro_batch_size_bounds_memory_only_so_a_resume_may_change_it(tiny_model_dir, tmp_path, smaller):
    """One micro-batch of 8 or several smaller ones give the same update (one batch-wide normaliser), so a run that
    ran out of memory can resume with smaller micro-batches (in sequences or in tokens) as the same experiment."""
    common = {"grpo.steps": 2, "grpo.lr": 1e-3, "run.checkpoint_every": 1, "run.eval_every": 0,
              "rewards": "{test_says_x: 1.0, format_partial: 0.5}", "grpo.micro_batch_size": 8}
    whole = train_zero(tiny_config(tiny_model_dir, tmp_path / "a", **common), progress=False)
    train_zero(tiny_config(tiny_model_dir, tmp_path / "b", **{**common, "grpo.steps": 1}), progress=False)
    split = train_zero(tiny_config(tiny_model_dir, tmp_path / "b", **{**common, **smaller}),
                       resume=True, progress=False)
    final_a = load_file(whole.latest_checkpoint() / "model.safetensors")
    final_b = load_file(split.latest_checkpoint() / "model.safetensors")
    assert max(float((final_a[k] - final_b[k]).abs().max()) for k in final_a) < 1e-5
    assert not all(torch.equal(final_a[k], load_file(split.root / "checkpoints/step-000001/model.safetensors")[k])
                   for k in final_a)  # step 2 did train


def test_run_directory_contents(tiny_model_dir, tmp_path):
    cfg = tiny_config(tiny_model_dir, tmp_path / "run", **{"grpo.steps": 2, "run.eval_every": 1,
                                                           "run.checkpoint_every": 1})
    run = train_zero(cfg, progress=False)
    names = {p.name for p in run.root.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "samples.jsonl", "plot.png", "checkpoints"} <= names
    metrics = run.read_metrics()
    assert [m["step"] for m in metrics] == [0, 1, 2]
    for key in ("reward/total", "train/accuracy", "train/format", "completion/length_mean", "kl",
                "clip_fraction", "entropy", "grad_norm", "lr", "time/generate", "time/score", "time/train",
                "tokens_per_s", "eval/accuracy"):
        assert key in metrics[1], key
    samples = [json.loads(line) for line in (run.root / "samples.jsonl").read_text().splitlines()]
    assert {"question", "completion", "reward", "rewards", "advantage"} <= set(samples[0])
    # the checkpoint is a plain transformers checkpoint
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(run.latest_checkpoint())
    with pytest.raises(FileExistsError, match="--resume"):
        train_zero(cfg, progress=False)


def test_eval_at_start_off_skips_only_the_step_0_evaluation(tiny_model_dir, tmp_path):
    cfg = tiny_config(tiny_model_dir, tmp_path / "run", **{"grpo.steps": 2, "run.eval_every": 2,
                                                           "run.eval_at_start": "false", "run.plot_every": 0})
    metrics = train_zero(cfg, progress=False).read_metrics()
    assert [m["step"] for m in metrics] == [1, 2]
    assert "eval/accuracy" not in metrics[0] and "eval/accuracy" in metrics[1]


def test_aha_lens_logs_reflection_metrics_and_candidates(tiny_model_dir, tmp_path, monkeypatch):
    real_rollout = trainer_mod.GRPOTrainer.rollout

    def with_one_aha(self, step):  # the tiny model never reflects; plant one self-correction
        data = real_rollout(self, step)
        gold = data.rows[0]["answer"]
        data.texts[0] = (f"<think> The answer is {int(gold) + 1}. Wait, let me check that again: "
                         f"the answer is {gold}. </think> <answer>{gold}</answer>")
        return data

    monkeypatch.setattr(trainer_mod.GRPOTrainer, "rollout", with_one_aha)
    run = train_zero(tiny_config(tiny_model_dir, tmp_path / "run", **{"grpo.steps": 1, "run.eval_every": 0}),
                     progress=False)
    metrics = run.read_metrics()[-1]
    assert metrics["aha/candidates"] == 1 and metrics["aha/reflection_rate"] == 1 / 8
    assert metrics["aha/accuracy_with_reflection"] == 1.0
    (candidate,) = [json.loads(line) for line in (run.root / "aha.jsonl").read_text().splitlines()]
    assert candidate["step"] == 1 and "Wait" in candidate["completion"]


def test_lora_run_trains_only_adapters(tiny_model_dir, tmp_path):
    cfg = tiny_config(tiny_model_dir, tmp_path / "run", **{"grpo.steps": 2, "run.eval_every": 0,
                                                           "model.lora_r": 4, "grpo.beta": 0.1,
                                                           "rewards": "{test_says_x: 1.0}"})
    run = train_zero(cfg, progress=False)
    assert (run.latest_checkpoint() / "adapter_model.safetensors").is_file()
    assert all("kl" in m for m in run.read_metrics())


@pytest.mark.parametrize("speedup, expected", [(4.0, torch.bfloat16), (0.02, torch.float32)])
def test_auto_precision_follows_the_machine(tiny_model_dir, tmp_path, monkeypatch, speedup, expected):
    """`engine_options: {dtype: auto}` + `grpo.bf16_autocast: auto` (the SmolLM2 recipe): bf16 rollouts and a
    bf16 training pass where the probe finds bf16 GEMMs fast (AVX-512 BF16), exact fp32 where they are
    emulated (AVX2); a run trains either way."""
    import r1lab.precision as precision

    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: speedup)
    seen = {}
    real_train_on = trainer_mod.GRPOTrainer.train_on

    def spy(self, data):
        seen.update(engine=self.engine.forward.dtype, autocast=self.bf16_autocast)
        return real_train_on(self, data)

    monkeypatch.setattr(trainer_mod.GRPOTrainer, "train_on", spy)
    cfg = tiny_config(tiny_model_dir, tmp_path / "run", **{
        "engine": "native", "engine_options": "{dtype: auto}", "grpo.bf16_autocast": "auto", "grpo.steps": 2,
        "run.eval_every": 0, "run.plot_every": 0, "rewards": "{test_says_x: 1.0}"})
    run = train_zero(cfg, progress=False)
    assert seen == {"engine": expected, "autocast": expected == torch.bfloat16}
    assert [m["step"] for m in run.read_metrics()] == [1, 2]
