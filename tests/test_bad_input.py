"""User mistakes fail fast with a message naming the file, line or field and what was expected."""
import pytest
from typer.testing import CliRunner

from r1lab.cli import app
from r1lab.config import ConfigError, load_config
from r1lab.data import TaskConfig, TaskError, load_task
from r1lab.models import ModelNotFoundError, resolve_model_path
from r1lab.rl.config import ZeroConfig


def test_unknown_config_key_names_file_and_field(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("grpo:\n  learning_rate: 1e-5\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: grpo: unknown field\(s\) \['learning_rate'\].*lr"):
        load_config(ZeroConfig, recipe)


def test_wrong_type_names_field_and_expected_type(tmp_path):
    with pytest.raises(ConfigError, match=r"grpo\.steps: expected an integer, got 'many'"):
        load_config(ZeroConfig, None, ["grpo.steps=many"])
    with pytest.raises(ConfigError, match=r"loss_type must be one of"):
        load_config(ZeroConfig, None, ["grpo.loss_type=ppo"])


def test_overrides_parse_yaml_values():
    cfg = load_config(ZeroConfig, None, ["grpo.lr=2e-5", "rewards={format: 0.5}", "task.kwargs={min_terms: 2}"])
    assert cfg.grpo.lr == 2e-5 and cfg.rewards == {"format": 0.5} and cfg.task.kwargs == {"min_terms": 2}


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "1+1", "answer": "2"}\n{"prompt": "2+2", answer: 4}\n')
    with pytest.raises(TaskError, match=r"d\.jsonl:2: not valid JSON"):
        load_task(TaskConfig(source="jsonl", path=str(data)))
    data.write_text('{"prompt": "1+1"}\n')
    with pytest.raises(TaskError, match=r"d\.jsonl:1: missing field\(s\) \['answer'\]"):
        load_task(TaskConfig(source="jsonl", path=str(data)))


def test_gsm8k_line_without_final_answer_marker(tmp_path):
    data = tmp_path / "g.jsonl"
    data.write_text('{"question": "q", "answer": "no marker"}\n')
    with pytest.raises(TaskError, match=r"g\.jsonl:1: field 'answer' has no '####"):
        load_task(TaskConfig(source="gsm8k", path=str(data)))


def test_unknown_task_and_model():
    with pytest.raises(TaskError, match="task.name='no_such_task'"):
        load_task(TaskConfig(name="no_such_task"))
    with pytest.raises(TaskError, match="task.source='nope'"):
        load_task(TaskConfig(source="nope"))
    with pytest.raises(ModelNotFoundError, match="unknown model 'not-a-model'"):
        resolve_model_path("not-a-model")


def test_cli_reports_errors_without_traceback(tmp_path):
    result = CliRunner().invoke(app, ["zero", "--model", "not-a-model", "-o", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "error:" in result.output and "unknown model" in result.output
    result = CliRunner().invoke(app, ["zero", "--set", "grpo.bogus=1"])
    assert result.exit_code == 2 and "unknown field" in result.output
    result = CliRunner().invoke(app, ["zero", "--set", "rewards={no_such_reward: 1}", "-o", str(tmp_path / "r2")])
    assert result.exit_code == 2 and "rewards.no_such_reward" in result.output
