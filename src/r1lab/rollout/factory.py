"""Build a rollout backend by name; the only place that knows which engines exist."""
from __future__ import annotations

import sys

# auto: the native engine where it knows the architecture, else transformers generate (with a notice).
# vllm: GPU only, `pip install r1lab[vllm]`.
ENGINES = ("auto", "hf", "native", "vllm")
_NOTICED: set[str] = set()  # architectures already announced as falling back: one notice per process


def make_engine(name: str, model, tokenizer, **kwargs):
    if name == "hf":
        from r1lab.rollout.hf import HFEngine

        return HFEngine(model, tokenizer, **kwargs)
    if name == "native":
        return _native(model, tokenizer, **kwargs)
    if name == "auto":
        return _native_or_hf(model, tokenizer, **kwargs)
    if name == "vllm":
        from r1lab.rollout.vllm import VLLMEngine

        return VLLMEngine(model, tokenizer, **kwargs)
    raise ValueError(f"engine must be one of {list(ENGINES)}, got {name!r}")


def _native(model, tokenizer, **kwargs):
    from r1lab.rollout.engine import NativeEngine
    from r1lab.rollout.linear import can_prepack

    # r1lab's own callers either sample from a fixed model or call refresh_weights() after every
    # optimizer step, so they take the prepacked copy: the same numbers, 2x faster decode on CPU.
    if "prepack" not in kwargs and not kwargs.get("quantize"):
        kwargs["prepack"] = can_prepack(next(model.parameters()).device)
    return NativeEngine(model, tokenizer, **kwargs)


def _native_or_hf(model, tokenizer, **kwargs):
    from r1lab.rollout.families import UnsupportedModelError
    from r1lab.rollout.hf import HFEngine

    try:
        return _native(model, tokenizer, **kwargs)
    except UnsupportedModelError as err:
        kind = str(getattr(getattr(model, "config", None), "model_type", type(model).__name__))
        if kind not in _NOTICED:
            _NOTICED.add(kind)
            print(f"r1lab: the native rollout engine cannot run this model ({err}); "
                  "sampling with transformers generate instead (slower)", file=sys.stderr)
        hf_options = {k: v for k, v in kwargs.items() if k == "max_batch_size"}
        return HFEngine(model, tokenizer, **hf_options)
