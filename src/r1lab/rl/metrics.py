"""A GRPO step's logged metrics from whole-batch per-sample columns: pure functions, no ranks, no I/O.
The names are the stable vocabulary runs are compared by (docs/rl.md lists them)."""
from __future__ import annotations

import numpy as np

from r1lab.rewards.scoring import applicable_mean, reward_metrics as per_reward_metrics

# Always measured, whatever the weights: the numbers people compare across runs.
DIAGNOSTIC_REWARDS = ("accuracy", "accuracy_lenient", "format")


def uniform_groups(totals: list[float], group_size: int) -> list[bool]:
    """Per group: do all its samples share one reward (no signal for group-relative advantages)?"""
    grouped = np.asarray(totals, dtype=np.float64).reshape(-1, group_size)
    return (grouped.max(1) == grouped.min(1)).tolist()


def reward_metrics(every: dict[str, list], weighted: list[str], group_size: int, failures: dict[str, int]
                   ) -> dict[str, float]:
    """Reward means (total, each weighted reward with its spread and failures, the diagnostic ones), the
    within-group spread of the total; a reward's None (not applicable) leaves its mean."""
    grouped = np.asarray(every["total"], dtype=np.float64).reshape(-1, group_size)
    return {
        "reward/total": float(grouped.mean()),
        "reward/total_std": float(grouped.std(1, ddof=1).mean()) if group_size > 1 else 0.0,
        **per_reward_metrics({n: every[f"reward/{n}"] for n in weighted}, failures),
        "train/accuracy": applicable_mean(every["reward/accuracy"]),
        "train/accuracy_lenient": applicable_mean(every["reward/accuracy_lenient"]),
        "train/format": applicable_mean(every["reward/format"]),
        "reward/failures": float(sum(failures.values())),
    }


def completion_metrics(lengths: list[int], truncated: list[bool], uniform: list[bool]) -> dict[str, float]:
    return {
        "completion/length_mean": float(np.mean(lengths)),
        "completion/length_p90": float(np.percentile(lengths, 90)),
        "completion/length_max": float(max(lengths)),
        "completion/truncated_rate": float(np.mean(truncated)),
        "groups/uniform_fraction": float(np.mean(uniform)),
    }


def timing_metrics(t_generate: float, t_score: float, t_train: float, t_step: float, generated: int
                   ) -> dict[str, float]:
    return {"time/generate": t_generate, "time/score": t_score, "time/train": t_train, "time/step": t_step,
            "tokens_per_s": generated / max(t_generate, 1e-9)}


def sample_picks(batch_size: int, group_size: int, n: int) -> list[int]:
    """Which of the batch's samples samples.jsonl shows: the first of each group, then the rest in order."""
    picks = [i * group_size for i in range(batch_size // group_size)][:n]
    return picks + [i for i in range(batch_size) if i not in picks][: n - len(picks)]
