"""r1lab: reproduce DeepSeek-R1 (R1-Zero, the R1 recipe, distillation, evaluation, serving)."""
__version__ = "0.1.0"
