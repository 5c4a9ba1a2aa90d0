"""`--resume`: says whether it resumes or starts, refuses a changed experiment, finds the newest complete
checkpoint even when `latest` lags behind, and clears what killed saves left."""
import json
import subprocess

import pytest
import yaml

from cli_support import error_line, r1lab
from r1lab.config import ConfigError, load_config, to_yaml
from r1lab.rl.config import ZeroConfig
from r1lab.runs import RunDir
from r1lab.runs.resume import check_same_experiment, config_changes, removed_on_failure


def test_config_changes_names_fixed_fields_only():
    saved = {"grpo": {"lr": 1e-5, "steps": 10, "group_size": 8}, "run": {"eval_every": 5, "eval_size": 200},
             "model": {"name": "a"}}
    now = {"grpo": {"lr": 2e-5, "steps": 20, "group_size": 4}, "run": {"eval_every": 2, "eval_size": 100},
           "model": {"name": "b"}, "new_field": 1}
    assert config_changes(saved, now) == ["grpo.lr: 1e-05 -> 2e-05", "grpo.group_size: 8 -> 4",
                                          "run.eval_size: 200 -> 100", "model.name: 'a' -> 'b'"]
    assert config_changes(saved, saved) == []


def test_resume_refuses_a_changed_loss_type(tmp_path):
    cfg = load_config(ZeroConfig, None, [f"run.output_dir={tmp_path}"])
    (tmp_path / "config.yaml").write_text(to_yaml(cfg))
    check_same_experiment(RunDir(tmp_path), load_config(ZeroConfig, None, [f"run.output_dir={tmp_path}",
                                                                           "grpo.steps=500", "run.eval_every=1"]))
    with pytest.raises(ConfigError, match=r"grpo\.loss_type: 'grpo' -> 'dapo'"):
        check_same_experiment(RunDir(tmp_path), load_config(ZeroConfig, None, [f"run.output_dir={tmp_path}",
                                                                               "grpo.loss_type=dapo"]))


def test_newest_complete_checkpoint_wins_over_a_lagging_latest(tmp_path, model, tokenizer):
    run = RunDir(tmp_path)
    for step in (1, 2):
        run.save_checkpoint(step, model, tokenizer, {"step": step}, keep=3)
    (run.checkpoints / "latest").write_text("step-000001\n")  # killed between step 2's rename and this update
    (run.checkpoints / ".tmp-abc").mkdir()  # a save killed mid-write
    (run.checkpoints / ".tmp-abc" / "model.safetensors").write_text("half")
    (run.checkpoints / ".latest.xyz").write_text("step-0")
    (run.checkpoints / "step-000003").mkdir()  # no trainer_state.pt: not complete
    (tmp_path / ".metrics.jsonl.q1w2").write_text("")
    assert run.latest_checkpoint().name == "step-000002"
    run.clean_stale()
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["latest", "step-000001", "step-000002",
                                                                 "step-000003"]
    assert (run.checkpoints / "latest").read_text() == "step-000002\n"
    assert not (tmp_path / ".metrics.jsonl.q1w2").exists()


def test_removed_on_failure_removes_only_what_it_created(tmp_path):
    kept = tmp_path / "existing"
    kept.mkdir()
    for root, gone in ((tmp_path / "new" / "deeper" / "run", tmp_path / "new"), (kept, None)):
        with pytest.raises(ValueError):
            with removed_on_failure(root):
                root.mkdir(parents=True, exist_ok=True)
                (root / "config.yaml").write_text("x")
                raise ValueError("bad task")
        assert gone is None or not gone.exists()
    assert (kept / "config.yaml").exists()  # the folder was there before: left as it was


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def zero(run, data, cache, *sets):
    args = ["zero", "--model", "tiny-llama", "-o", str(run), "--resume", "--set", "task.source=jsonl",
            "--set", f"task.path={data}", "--set", "task.test_size=1", "--set", "grpo.group_size=2",
            "--set", "grpo.prompts_per_step=1", "--set", "grpo.max_new_tokens=4", "--set", "run.eval_every=0",
            "--set", "run.plot_every=0", "--set", "run.checkpoint_every=1", "--set", "prompt.style=zero"]
    for item in sets:
        args += ["--set", item]
    return r1lab(*args, cache=cache)


def test_resume_says_what_it_does_and_refuses_a_changed_experiment(tmp_path, cache):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+{i}", "answer": str(2 * i)}) + "\n" for i in range(1, 5)))
    run = tmp_path / "run"
    first = zero(run, data, cache, "grpo.steps=2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"no checkpoint in {run}; starting a new run" in first.stderr

    changed = zero(run, data, cache, "grpo.steps=3", "grpo.lr=1e-3", "grpo.group_size=4")
    error_line(changed, "grpo.lr: 1e-05 -> 0.001", "grpo.group_size: 2 -> 4")
    assert yaml.safe_load((run / "config.yaml").read_text())["grpo"]["lr"] == 1e-5

    # killed after step 2's checkpoint was renamed into place but before `latest` moved to it
    (run / "checkpoints" / "latest").write_text("step-000001\n")
    (run / "checkpoints" / ".tmp-killed").mkdir()
    resumed = zero(run, data, cache, "grpo.steps=3")  # more steps: allowed
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"continuing {run} from step-000002" in resumed.stderr
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # step 2 not redone
    assert not (run / "checkpoints" / ".tmp-killed").exists()
    assert (run / "checkpoints" / "latest").read_text() == "step-000003\n"


def _mount_tmpfs(path) -> bool:
    path.mkdir()
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
                              capture_output=True).returncode == 0
    except OSError:
        return False


def test_full_disk_gives_one_line_in_zero_and_eval(tmp_path, cache):
    full = tmp_path / "full"
    if not _mount_tmpfs(full):
        pytest.skip("needs permission to mount a tiny tmpfs")
    try:
        _fill(full)
        data = tmp_path / "d.jsonl"
        data.write_text('{"prompt": "1+1", "answer": "2"}\n{"prompt": "2+2", "answer": "4"}\n')
        error_line(zero(full / "run", data, cache, "grpo.steps=1"), f"{full / 'run'}", "No space left on device")
        assert not (full / "run").exists()
        error_line(r1lab("eval", "--model", "tiny-llama", "--benchmark", "jsonl", "--data", str(data), "--k", "1",
                         "--max-new-tokens", "2", "-o", str(full / "eval"), cache=cache),
                   f"{full / 'eval'}", "No space left on device")
    finally:
        subprocess.run(["umount", str(full)], capture_output=True)


def _fill(folder) -> None:
    with open(folder / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass  # full
