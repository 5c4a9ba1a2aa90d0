"""Rule-based rewards. Importing this package registers every built-in reward and verifier."""
from r1lab.rewards import basic, code, shaping, verifiers  # noqa: F401  (registration side effects)
from r1lab.rewards.registry import get_reward, get_verifier, register_reward, register_verifier, reward_names
from r1lab.rewards.scoring import RewardBatch, score_batch

__all__ = ["RewardBatch", "get_reward", "get_verifier", "register_reward", "register_verifier",
           "reward_names", "score_batch"]
