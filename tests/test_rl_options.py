"""The new GRPO options through the real trainer on a tiny model, and their config validation."""
import pytest

from r1lab.config import ConfigError, load_config
from r1lab.rl.config import ZeroConfig
from r1lab.rl.trainer import train_zero


def _config(model_dir, out, **extra) -> ZeroConfig:
    overrides = [
        f"model.name={model_dir}", f"run.output_dir={out}", "task.train_size=16", "task.test_size=4",
        "task.kwargs={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 1}", "prompt.example=false",
        "prompt.system=''", "grpo.max_new_tokens=6", "grpo.prompts_per_step=2", "grpo.group_size=3",
        "grpo.steps=2", "run.eval_every=0", "run.plot_every=0", "run.samples_per_step=1", "engine=native",
        "rewards={format: 1.0, accuracy: 1.0}",
    ]
    return load_config(ZeroConfig, None, overrides + [f"{k}={v}" for k, v in extra.items()])


@pytest.mark.parametrize("options", [
    {"grpo.loss_type": "gspo", "grpo.mu": 2, "grpo.rollout_correction": "tis"},
    {"grpo.loss_type": "cispo", "grpo.eps_high": 4.0, "grpo.rollout_correction": "mis",
     "grpo.rollout_correction_level": "sequence", "grpo.advantage": "rloo", "grpo.scale_rewards": "batch"},
    {"grpo.loss_type": "sapo", "grpo.top_entropy_quantile": 0.5, "grpo.entropy_coef": 0.01,
     "grpo.advantage": "reinforce_pp", "grpo.beta": 0.05, "grpo.kl_estimator": "k3_ratio"},
])
def test_the_trainer_runs_every_new_option_and_logs_the_mismatch(tiny_model_dir, tmp_path, options):
    run = train_zero(_config(tiny_model_dir, tmp_path / "run", **options), progress=False)
    metrics = run.read_metrics()
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        # the native fp32 engine and the fp32 trainer score the same tokens alike
        assert m["mismatch/abs_logp_diff"] < 1e-4
        assert m["mismatch/kl_k3"] < 1e-6
        assert abs(m["mismatch/max_ratio"] - 1.0) < 1e-3
        if options.get("grpo.rollout_correction"):
            assert m["mismatch/is_weight_mean"] == pytest.approx(1.0, abs=1e-3)


def test_mismatch_logging_can_be_turned_off(tiny_model_dir, tmp_path):
    run = train_zero(_config(tiny_model_dir, tmp_path / "run", **{"grpo.log_mismatch": "false", "grpo.steps": 1}),
                     progress=False)
    assert not any(k.startswith("mismatch/") for k in run.read_metrics()[0])


@pytest.mark.parametrize("override,message", [
    ("grpo.loss_type=ppo", "grpo.loss_type"),
    ("grpo.advantage=mean", "grpo.advantage"),
    ("grpo.scale_rewards=sometimes", "grpo.scale_rewards"),
    ("grpo.kl_estimator=k4", "grpo.kl_estimator"),
    ("grpo.rollout_correction=clip", "grpo.rollout_correction"),
    ("grpo.top_entropy_quantile=0", "grpo.top_entropy_quantile"),
    ("grpo.rollout_correction_cap=0", "grpo.rollout_correction_cap"),
])
def test_bad_values_name_their_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ZeroConfig, None, [override])


def test_rollout_correction_needs_the_sampling_logprobs():
    with pytest.raises(ConfigError, match="grpo.log_mismatch"):
        load_config(ZeroConfig, None, ["grpo.rollout_correction=tis", "grpo.log_mismatch=false"])


def test_scale_rewards_booleans_still_load():
    assert load_config(ZeroConfig, None, ["grpo.scale_rewards=false"]).grpo.scale_rewards is False
