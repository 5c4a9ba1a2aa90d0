from r1lab.runs.plot import plot_metrics
from r1lab.runs.rundir import RunDir, atomic_write_text, read_jsonl_records, rng_state, set_rng_state

__all__ = ["RunDir", "atomic_write_text", "plot_metrics", "read_jsonl_records", "rng_state", "set_rng_state"]
