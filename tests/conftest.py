import pytest
import torch

from r1lab.models import tiny_model, tiny_tokenizer


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)  # tests run beside other work on 2 cores; keep them deterministic and polite


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def model(tokenizer):
    return tiny_model("llama", vocab_size=len(tokenizer))


@pytest.fixture
def qwen_model(tokenizer):
    return tiny_model("qwen2", vocab_size=len(tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama + char tokenizer saved as a normal HF checkpoint directory."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tok = tiny_tokenizer()
    tiny_model("llama", vocab_size=len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)
