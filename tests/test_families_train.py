"""A tiny random Gemma 3 and Qwen3 train through the CLI: `r1lab sft`, then `r1lab zero` from the SFT
checkpoint with the native rollout engine asked for explicitly (which errors on a model it cannot run)."""
import json

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from r1lab.cli import app

QA = [("2+2?", "<think>2+2=4</think><answer>4</answer>"), ("3+5?", "<think>3+5=8</think><answer>8</answer>"),
      ("7-1?", "<think>7-1=6</think><answer>6</answer>"), ("1+1?", "<think>1+1=2</think><answer>2</answer>")]
TINY_ZERO = ["task.train_size=64", "task.test_size=8", "task.kwargs={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 1}",
             "prompt.example=false", "prompt.system=''", "grpo.max_new_tokens=12", "grpo.prompts_per_step=2",
             "grpo.group_size=4", "run.eval_every=0", "run.plot_every=0", "run.checkpoint_every=2"]


def steps_of(run_dir):
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("alias", ["tiny-gemma3", "tiny-qwen3"])
def test_sft_then_zero_on_the_native_engine(alias, tmp_path, monkeypatch):
    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "completion": c}) + "\n" for q, c in QA))
    sft_dir = tmp_path / "sft"
    result = CliRunner().invoke(app, ["sft", "--model", alias, "--data", str(data), "--epochs", "1", "-o", str(sft_dir),
                                      "-s", "train.batch_size=2", "-s", "prompt.example=false", "-s", "run.plot_every=0"])
    assert result.exit_code == 0, result.output
    assert steps_of(sft_dir) == [1, 2]  # 4 samples at 2 per step

    zero_dir = tmp_path / "zero"
    args = ["zero", "--model", str(sft_dir), "--steps", "2", "--engine", "native", "-o", str(zero_dir)]
    result = CliRunner().invoke(app, args + [a for s in TINY_ZERO for a in ("-s", s)])
    assert result.exit_code == 0, result.output
    assert steps_of(zero_dir) == [1, 2]
    before = load_file(next((tmp_path / "cache" / "models" / alias).glob("*.safetensors")))
    after = load_file(next((zero_dir / "checkpoints").glob("*/model.safetensors")))
    changed = [name for name in after if name in before and not before[name].equal(after[name])]
    assert changed, "two GRPO steps after SFT should have moved the weights"
