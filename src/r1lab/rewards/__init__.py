"""Rule-based rewards. Importing this package registers every built-in reward and verifier."""
from r1lab.rewards import basic, code, shaping, verifiers  # noqa: F401  (registration side effects)
from r1lab.rewards.loading import Reward, load_reward, load_rewards, metric_name
from r1lab.reward_registry import get_reward, get_verifier, register_reward, register_verifier, reward_names
from r1lab.rewards.scoring import (ON_ERROR, RewardBatch, RewardError, applicable_mean, reward_metrics,
                                   reward_rows, score_batch)

__all__ = ["ON_ERROR", "Reward", "RewardBatch", "RewardError", "applicable_mean", "get_reward", "get_verifier",
           "load_reward", "load_rewards", "metric_name", "register_reward", "register_verifier", "reward_metrics",
           "reward_names", "reward_rows", "score_batch"]
