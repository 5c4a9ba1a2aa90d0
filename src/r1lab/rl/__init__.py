"""R1-Zero reinforcement learning: GRPO math (grpo.py) and the training loop (trainer.py)."""
