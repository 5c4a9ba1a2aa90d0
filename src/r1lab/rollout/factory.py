"""Build a rollout backend by name; the only place that knows which engines exist."""
from __future__ import annotations

ENGINES = ("hf", "native", "vllm")  # vllm: GPU only, `pip install r1lab[vllm]`


def make_engine(name: str, model, tokenizer, **kwargs):
    if name == "hf":
        from r1lab.rollout.hf import HFEngine

        return HFEngine(model, tokenizer, **kwargs)
    if name == "native":
        from r1lab.rollout.engine import NativeEngine
        from r1lab.precision import resolve_dtype
        from r1lab.rollout.linear import can_prepack

        # r1lab's own callers either sample from a fixed model or call refresh_weights() after every
        # optimizer step, so they take the prepacked copy: the same numbers, 2x faster decode on CPU.
        if "prepack" not in kwargs and not kwargs.get("quantize"):
            weight = next(model.parameters())
            dtype = resolve_dtype(kwargs.get("dtype"), weight.dtype, weight.device)
            kwargs["prepack"] = can_prepack(weight.device, dtype)
        return NativeEngine(model, tokenizer, **kwargs)
    if name == "vllm":
        from r1lab.rollout.vllm import VLLMEngine

        return VLLMEngine(model, tokenizer, **kwargs)
    raise ValueError(f"engine must be one of {list(ENGINES)}, got {name!r}")
