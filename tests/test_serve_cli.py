from typer.testing import CliRunner

from r1lab import cli
from r1lab.serve import app as serve_app


def test_serve_command_passes_its_flags_to_run_server(monkeypatch):
    calls = []
    monkeypatch.setattr(serve_app, "run_server", lambda model, **kw: calls.append((model, kw)))
    result = CliRunner().invoke(cli.app, ["serve", "--model", "ckpt", "--port", "9001", "--api-key", "k",
                                          "--served-model-name", "r1-tiny", "--no-think-prefill", "--threads", "1",
                                          "--max-body-mb", "0.5"])
    assert result.exit_code == 0, result.output
    model, options = calls[0]
    assert model == "ckpt"
    assert options == dict(host="127.0.0.1", port=9001, api_key="k", served_model_name="r1-tiny", think_prefill=False,
                           default_max_tokens=1024, max_batch=64, max_waiting=256, threads=1,
                           max_body_bytes=2**19)


def test_serve_reports_a_missing_model_as_a_user_error(tmp_path):
    result = CliRunner().invoke(cli.app, ["serve", "--model", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "nope" in result.output


def test_serve_without_fastapi_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    result = CliRunner().invoke(cli.app, ["serve", "--model", "ckpt"])
    assert result.exit_code == 2
    assert "pip install 'r1lab[serve]'" in result.output
