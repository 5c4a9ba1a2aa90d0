from r1lab.rollout.base import Completion, Engine, SamplingParams, generate_text

__all__ = ["Completion", "Engine", "SamplingParams", "generate_text"]
