"""Run untrusted Python (model-written code) contained at the OS level. Needs root (see runner.py)."""
from r1lab.sandbox.pool import SandboxPool
from r1lab.sandbox.runner import Limits, SandboxError, SandboxResult, run_files, run_python

__all__ = ["Limits", "SandboxError", "SandboxPool", "SandboxResult", "run_files", "run_python"]
