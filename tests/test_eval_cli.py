import json

import pytest
import torch
from typer.testing import CliRunner

from r1lab.cli.evaluate import eval_app

runner = CliRunner(env={"COLUMNS": "200"})  # tables wider than 80 columns stay on one line each


@pytest.fixture
def model_dir(tmp_path, model, tokenizer):
    path = tmp_path / "tiny"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def bench(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps({"question": f"{i} + 1 = ?", "solution": str(i + 1)}) + "\n" for i in range(3)))
    return str(path)


def _eval(model_dir, bench, out, *extra):
    return runner.invoke(eval_app, ["--model", model_dir, "--benchmark", "jsonl", "--data", bench,
                                    "--answer-field", "solution", "--k", "2", "--limit", "2",
                                    "--max-new-tokens", "3", "--output-dir", str(out), *extra])


def test_eval_writes_samples_and_summary_and_prints_the_table(model_dir, bench, tmp_path):
    result = _eval(model_dir, bench, tmp_path / "run", "--temperature", "0.7")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["questions"], summary["k"], summary["samples"], summary["temperature"]) == (2, 2, 4, 0.7)
    assert len((tmp_path / "run" / "samples.jsonl").read_text().splitlines()) == 4
    assert "pass@1 (mean ± se)" in result.output and "cons@2" in result.output


def test_compare_prints_one_row_per_run(model_dir, bench, tmp_path):
    for name, seed in (("first", "0"), ("second", "1")):
        assert _eval(model_dir, bench, tmp_path / name, "--seed", seed).exit_code == 0
    result = runner.invoke(eval_app, ["compare", str(tmp_path / "first"), str(tmp_path / "second" / "summary.json")])
    assert result.exit_code == 0, result.output
    assert "first" in result.output and "second" in result.output and "pass@1" in result.output


def test_compare_of_an_unfinished_run_says_how_to_finish_it(tmp_path):
    (tmp_path / "half").mkdir()
    result = runner.invoke(eval_app, ["compare", str(tmp_path / "half")])
    assert result.exit_code == 2
    assert "rerun its eval command to resume" in result.output


def test_user_mistakes_exit_2_with_the_reason(model_dir, bench, tmp_path):
    result = runner.invoke(eval_app, ["--model", model_dir, "--benchmark", "mat500"])
    assert result.exit_code == 2
    assert "unknown benchmark 'mat500'" in result.output
    result = runner.invoke(eval_app, ["--benchmark", "gsm8k"])
    assert result.exit_code == 2 and "--model is required" in result.output
    result = _eval(model_dir, bench, tmp_path / "run", "--k", "0")
    assert result.exit_code == 2 and "k must be >= 1" in result.output
    result = _eval(model_dir, bench, tmp_path / "run", "--engine", "nope")
    assert result.exit_code == 2 and "--engine must be one of" in result.output
    if not torch.cuda.is_available():
        result = _eval(model_dir, bench, tmp_path / "run", "--engine", "vllm")
        assert result.exit_code == 2 and "needs a CUDA GPU" in result.output


def test_config_file_values_are_overridden_by_flags(model_dir, bench, tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text(f"model: {model_dir}\nbenchmark: jsonl\ndata: {bench}\nanswer_field: solution\n"
                      f"k: 3\nlimit: 1\nmax_new_tokens: 2\noutput_dir: {tmp_path / 'run'}\n")
    result = runner.invoke(eval_app, ["--config", str(config), "--k", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["k"] == 1


def test_stop_flags_are_recorded_in_the_setup(model_dir, bench, tmp_path):
    result = _eval(model_dir, bench, tmp_path / "run", "--stop", "</answer>", "--stop", "\n\n")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "eval_config.json").read_text())["stop"] == ["</answer>", "\n\n"]
