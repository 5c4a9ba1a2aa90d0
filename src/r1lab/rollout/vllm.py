"""vLLM rollouts on a GPU, behind the same `Engine` interface (optional extra: `pip install 'r1lab[vllm]'`).

Colocated: each trainer process (each torchrun rank) holds its own vLLM engine on its own GPU, inside
the process (`distributed_executor_backend="external_launcher"`), so weights are handed over in memory:
  * After every optimizer step the trainer calls `refresh_weights()`; the next `generate` loads the
    policy's current weights into vLLM (`model.load_weights`, HF parameter names) before sampling.
  * Training and sampling share the GPU: vLLM takes `gpu_memory_utilization` of it (default 0.3) for
    its weights and KV cache, and with sleep mode (default on) it frees both between `generate` calls
    (`sleep(level=2)`: weights are reloaded from the trainer anyway, so none are kept).
  * Log-probs: the trainer recomputes pi_old with its own forward pass (rl/trainer.py, mu > 1) and never
    uses the sampler's: vLLM's kernels (bf16, other attention) give slightly different numbers, and
    importance ratios against them would be biased. This engine returns no log-probs.
  * Each row is sampled with its own seed (vLLM per-request seeds), as the other engines do.

Status: written against vLLM's documented offline API (LLM, SamplingParams(seed=...), sleep/wake_up,
external_launcher), but not run here: no GPU was available when it was written. See docs/distributed.md.
"""
from __future__ import annotations

import os
from typing import Sequence

from r1lab import dist
from r1lab.rollout.base import Completion, SamplingParams, check_seeds
from r1lab.rollout.finish import eos_ids_of, finish_completion


class EngineUnavailable(ValueError):
    """The backend cannot run here (no GPU, package missing); the message says what to do instead."""


def require_vllm() -> None:
    import torch

    if not torch.cuda.is_available():
        raise EngineUnavailable("engine=vllm needs a CUDA GPU and none is visible; on a CPU use engine=native "
                                "(or engine=hf)")
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise EngineUnavailable("engine=vllm needs the vllm package: pip install 'r1lab[vllm]'") from None


class VLLMEngine:
    """model: the trainer's policy (a HF causal LM); vLLM builds the same architecture from
    `model.name_or_path` and then takes its weights from `model`, so resumed or fine-tuned weights are used.
    max_batch_size: vLLM's max_num_seqs. Other keyword arguments go to `vllm.LLM` (max_model_len, dtype, ...).
    """

    def __init__(self, model, tokenizer, gpu_memory_utilization: float = 0.3, sleep: bool = True,
                 max_batch_size: int = 256, **llm_kwargs):
        require_vllm()
        if hasattr(model, "get_base_model"):
            raise EngineUnavailable("engine=vllm does not take LoRA policies yet (model.lora_r > 0); use engine=hf")
        from vllm import LLM

        # The engine must live in this process: weights are passed as tensors, not pickled to a worker.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if dist.is_distributed():  # one engine per rank, in the process torchrun started (data parallel)
            llm_kwargs.setdefault("distributed_executor_backend", "external_launcher")
            llm_kwargs.setdefault("data_parallel_size", dist.world_size())
        llm_kwargs.setdefault("dtype", "bfloat16")
        self.llm = LLM(model=model.name_or_path, tokenizer=model.name_or_path, tensor_parallel_size=1,
                       gpu_memory_utilization=gpu_memory_utilization, enable_sleep_mode=sleep,
                       max_num_seqs=max_batch_size, seed=0, **llm_kwargs)
        self.model, self.tokenizer, self.sleep = model, tokenizer, sleep
        self.eos_ids = eos_ids_of(tokenizer, model)
        self.stale = True  # vLLM holds the files' weights; the policy's are loaded before the first sample
        if sleep:
            self.llm.sleep(level=2)

    def refresh_weights(self) -> None:
        """The policy changed (an optimizer step): load its weights before the next `generate`."""
        self.stale = True

    def _runner_model(self):
        executor = self.llm.llm_engine.model_executor
        worker = executor.driver_worker
        return getattr(worker, "worker", worker).model_runner.model

    def _wake(self) -> None:
        if self.sleep:
            self.llm.wake_up(tags=["weights"])
        if self.stale:
            import torch

            with torch.no_grad():
                self._runner_model().load_weights(self.model.state_dict().items())
            self.stale = False
        if self.sleep:
            self.llm.wake_up(tags=["kv_cache"])

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams,
                 seeds: Sequence[int] | None = None) -> list[Completion]:
        if not prompts:
            return []
        check_seeds(prompts, seeds)
        from vllm import SamplingParams as VLLMParams
        from vllm.inputs import TokensPrompt

        per_row = [VLLMParams(n=1, max_tokens=params.max_new_tokens, temperature=params.temperature,
                              top_p=params.top_p, top_k=params.top_k if params.top_k > 0 else -1,
                              stop=list(params.stop) or None, include_stop_str_in_output=params.include_stop,
                              stop_token_ids=sorted(self.eos_ids),
                              seed=int(seeds[i]) if seeds is not None else None)
                   for i in range(len(prompts))]
        self._wake()
        try:
            outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(map(int, p))) for p in prompts],
                                        per_row, use_tqdm=False)
        finally:
            if self.sleep:
                self.llm.sleep(level=2)
        # r1lab's own cut (EOS, stop strings) so every backend ends a completion at the same token
        return [finish_completion(p, list(out.outputs[0].token_ids), None, self.tokenizer, self.eos_ids,
                                  params)
                for p, out in zip(prompts, outputs)]
