"""Bad input through the real `r1lab` command: exit code 2, one line naming the file/line/field, no traceback,
and no run directory left behind."""
import json

import pytest

from cli_support import error_line, r1lab

ROWS = [{"prompt": f"{i}+{i}", "answer": str(2 * i)} for i in range(1, 5)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def zero(tmp_path, cache, data, *sets, model="tiny-llama"):
    """`r1lab zero` on a JSONL task, a tiny model and a one-step budget; returns (result, run dir)."""
    run = tmp_path / "out" / "run"
    args = ["zero", "--model", model, "-o", str(run), "--set", "task.source=jsonl", "--set", f"task.path={data}",
            "--set", "task.test_size=1", "--set", "grpo.steps=1", "--set", "grpo.group_size=2",
            "--set", "grpo.prompts_per_step=1", "--set", "grpo.max_new_tokens=4", "--set", "run.eval_every=0",
            "--set", "run.plot_every=0", "--set", "prompt.style=zero"]
    for item in sets:
        args += ["--set", item]
    return r1lab(*args, cache=cache), run


def evaluate(tmp_path, cache, data, model="tiny-llama", output=None):
    out = output or str(tmp_path / "eval")
    return r1lab("eval", "--model", model, "--benchmark", "jsonl", "--data", str(data), "--k", "1",
                 "--max-new-tokens", "2", "--prompt-style", "zero", "-o", out, cache=cache)


def test_empty_task_file(tmp_path, cache):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    result, run = zero(tmp_path, cache, data)
    error_line(result, "empty.jsonl: the dataset has no rows")
    assert not (tmp_path / "out").exists()


def test_heldout_size_covering_every_row(tmp_path, cache):
    data = write_jsonl(tmp_path / "four.jsonl", ROWS)
    result, run = zero(tmp_path, cache, data, "task.test_size=4")
    error_line(result, "four.jsonl: no rows left to train on", "task.test_size=4")
    assert not (tmp_path / "out").exists()


def test_non_utf8_line_names_file_and_line_in_zero_and_eval(tmp_path, cache):
    data = tmp_path / "latin1.jsonl"
    data.write_bytes(b'{"prompt": "1+1", "answer": "2"}\n{"prompt": "caf\xe9", "answer": "4"}\n')
    result, run = zero(tmp_path, cache, data)
    error_line(result, "latin1.jsonl:2: not UTF-8", "0xe9")
    assert not (tmp_path / "out").exists()
    error_line(evaluate(tmp_path, cache, data), "latin1.jsonl:2: not UTF-8")
    assert not (tmp_path / "eval").exists()


def test_mapping_where_a_string_is_expected(tmp_path, cache):
    data = write_jsonl(tmp_path / "d.jsonl", [*ROWS, {"prompt": "3+4", "answer": {"x": 1}}])
    result, run = zero(tmp_path, cache, data)
    error_line(result, "d.jsonl:5: field 'answer': expected a string or a number, got dict")
    assert not (tmp_path / "out").exists()
    error_line(evaluate(tmp_path, cache, data), "d.jsonl:5: field 'answer'", "got dict")
    listed = write_jsonl(tmp_path / "l.jsonl", [{"prompt": ["a", "list"], "answer": "1"}])
    error_line(evaluate(tmp_path, cache, listed), "l.jsonl:1: field 'prompt': expected a string, got list")


@pytest.mark.parametrize("setting, message", [
    ("grpo.group_size=1", "grpo.group_size must be >= 2"),
    ("grpo.lr=-1e-5", "grpo.lr must be > 0, got -1e-05"),
    ("grpo.temperature=-0.5", "grpo.temperature must be > 0, got -0.5"),
    ("rewards={no_such_reward: 1}", "rewards.no_such_reward"),
    ("task.source=nope", "task.source='nope'"),
])
def test_bad_value_names_the_field_and_leaves_no_run_dir(tmp_path, cache, setting, message):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    result, run = zero(tmp_path, cache, data, setting)
    error_line(result, message)
    assert not (tmp_path / "out").exists()


def test_unknown_model_leaves_no_run_dir(tmp_path, cache):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    result, run = zero(tmp_path, cache, data, model="not-a-model")
    error_line(result, "unknown model 'not-a-model'")
    assert not (tmp_path / "out").exists()


def test_unknown_top_level_field_names_file_and_field(tmp_path, cache):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("modle: {name: tiny-llama}\n")
    line = error_line(r1lab("zero", "--config", str(recipe), cache=cache), "r.yaml: unknown field(s) ['modle']")
    assert ": : " not in line


def test_model_dir_with_only_config_json(tmp_path, cache):
    model = tmp_path / "bare"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 100}))
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    result, run = zero(tmp_path, cache, data, model=str(model))
    line = error_line(result, f"{model}: a model directory without weights")
    assert "sentencepiece" not in line
    assert not (tmp_path / "out").exists()
    error_line(evaluate(tmp_path, cache, data, model=str(model)), f"{model}: a model directory without weights")


def test_unwritable_output_in_zero_and_eval(tmp_path, cache):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    args = ["--model", "tiny-llama", "--set", "task.source=jsonl", "--set", f"task.path={data}", "--set",
            "task.test_size=1"]
    error_line(r1lab("zero", *args, "-o", "/proc/x/run", cache=cache), "/proc/x")
    error_line(evaluate(tmp_path, cache, data, output="/proc/x/eval"), "/proc/x")
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a file where a folder should go: what a read-only tree also gives, even to root
    error_line(r1lab("zero", *args, "-o", str(blocker / "run"), cache=cache), str(blocker))


def test_long_error_is_one_line_when_stderr_is_not_a_terminal(tmp_path, cache):
    deep = tmp_path / ("a-very-long-folder-name-" * 6) / "missing.jsonl"
    result = r1lab("eval", "--model", "tiny-llama", "--benchmark", "jsonl", "--data", str(deep), cache=cache)
    line = error_line(result, f"{deep}: no such file or folder")
    assert len(line) > 120  # longer than a default 80-column console: it was not wrapped
