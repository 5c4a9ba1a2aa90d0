"""`r1lab zero` with your own reward file, dataset and task, as a user runs it (the console script)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
R1LAB = Path(sys.executable).with_name("r1lab")
TINY = ["--steps", "1", "--set", "grpo.max_new_tokens=6", "--set", "grpo.prompts_per_step=2",
        "--set", "grpo.group_size=2", "--set", "run.eval_every=0", "--set", "run.plot_every=0",
        "--set", "prompt.example=false", "--set", "prompt.system=''", "--set", "engine=hf"]

REWARD_FILE = '''
def token_share(completions, completion_ids, completion_tokens, **columns):
    # batched, TRL-style; completion_tokens must be the real count the trainer generated
    assert all(n == len(ids) for n, ids in zip(completion_tokens, completion_ids))
    return [n / 6 for n in completion_tokens]

def level_bonus(completion, **row):
    return float(row["info"]["level"])  # a column of the user's dataset
'''


def r1lab(*args, cwd=REPO):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([str(R1LAB), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def user_project(tmp_path):
    (tmp_path / "my_rewards.py").write_text(REWARD_FILE)
    records = [{"uid": i, "instruction": f"add {i} and 1", "info": {"level": i % 2}, "target": {"value": str(i + 1)}}
               for i in range(16)]
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "train.parquet")
    (tmp_path / "recipe.yaml").write_text(
        "task: {source: hf, path: train.parquet, prompt_field: instruction, answer_field: target.value, "
        "test_size: 4, verifier: numeric}\n"
        "rewards: {my_rewards.py:token_share: 1.0, my_rewards.py:level_bonus: 0.5}\n")
    return tmp_path


def test_zero_with_a_user_reward_file_and_a_parquet_dataset(user_project, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    result = r1lab("zero", "-c", str(user_project / "recipe.yaml"), "--model", tiny_model_dir, "-o", str(out), *TINY)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = metrics[-1]
    assert 0 < last["reward/my_rewards.token_share"] <= 1.0 and "reward/my_rewards.token_share_std" in last
    assert last["reward/my_rewards.level_bonus_failures"] == 0.0
    assert 0.0 <= last["reward/my_rewards.level_bonus"] <= 1.0


def test_countdown_example_runs_on_a_tiny_model(tiny_model_dir, tmp_path):
    out = tmp_path / "countdown"
    result = r1lab("zero", "-c", "examples/countdown/recipe.yaml", "--model", tiny_model_dir, "-o", str(out), *TINY,
                   "--set", "task.kwargs={n: 20}", "--set", "task.test_size=4")
    assert result.returncode == 0, result.stderr[-2000:]
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert "reward/countdown.format_reward" in last and last["reward/countdown.format_reward_failures"] == 0.0


@pytest.mark.parametrize("override, message", [
    ("rewards={no_such_pkg.mod:fn: 1.0}", "cannot import module 'no_such_pkg.mod'"),
    ("rewards={my_rewards.py:missing: 1.0}", "has no function 'missing'; it defines: level_bonus, token_share"),
    ("task.prompt_field=question", "missing field(s) ['question']; fields present: ['info', 'instruction', 'target', 'uid']"),
    ("task.test_size=16", "task.test_size=16 but the dataset has only 16 distinct questions"),
    ("task.path=empty.csv", "the dataset has no rows"),
])
def test_bad_input_is_one_line_exit_2_and_no_run_directory(user_project, tiny_model_dir, tmp_path, override, message):
    (user_project / "empty.csv").write_text("instruction,target\n")
    out = tmp_path / "never"
    result = r1lab("zero", "-c", str(user_project / "recipe.yaml"), "--model", tiny_model_dir, "-o", str(out),
                   *TINY, "--set", override, cwd=user_project)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
    assert not out.exists()
