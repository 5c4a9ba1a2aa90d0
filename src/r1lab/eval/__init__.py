"""Evaluation: R1's protocol (k samples at T=0.6, top-p 0.95; pass@1, cons@k, pass@k) on any checkpoint."""
from r1lab.eval.benchmarks import BenchmarkSpec, load_benchmark
from r1lab.eval.compare import comparison_rows, load_summary
from r1lab.eval.harness import EvalConfig, run_eval, score_completion
from r1lab.eval.metrics import majority_vote, mean_stderr, pass_at_k, wilson_interval
from r1lab.eval.records import EvalError

__all__ = ["BenchmarkSpec", "EvalConfig", "EvalError", "comparison_rows", "load_benchmark", "load_summary",
           "majority_vote", "mean_stderr", "pass_at_k", "run_eval", "score_completion", "wilson_interval"]
