"""The built-in task sources, registered by name in data/registry.py (importing r1lab.data runs this)."""
from __future__ import annotations

from r1lab.data.base import Task, TaskConfig
from r1lab.data.bundled import bundled_file
from r1lab.data.humaneval import humaneval_rows
from r1lab.data.registry import register_rows_source, register_source, split_rows
from r1lab.data.sources import gsm8k_rows, jsonl_rows, reasoning_gym_task
from r1lab.data.tables import dataset_rows


def _gsm8k_task(cfg: TaskConfig) -> Task:
    if cfg.path:  # one file: split it
        train, test = split_rows(gsm8k_rows(cfg.path, "all"), cfg, "gsm8k")
    else:  # bundled: the train file for training, the official test split held out
        train = gsm8k_rows(bundled_file("gsm8k", "train"), "train")[: cfg.train_size]
        test = gsm8k_rows(bundled_file("gsm8k", "test"), "test")[: cfg.test_size]
    return Task("gsm8k", train, test)


def _benchmark_rows(name: str):
    def rows(cfg: TaskConfig):
        return jsonl_rows(cfg.path or bundled_file(name), "problem", "answer", "math", name)
    return rows


register_source("reasoning_gym", reasoning_gym_task, summary="procedural tasks by task.name (chain_sum, ...)")
register_source("gsm8k", _gsm8k_task, lambda cfg: gsm8k_rows(cfg.path or bundled_file("gsm8k"), "test"),
                summary="GSM8K (bundled train / test, or task.path)")
register_rows_source("math500", _benchmark_rows("math500"), "MATH-500 (held-out only)", held_out_only=True)
register_rows_source("aime24", _benchmark_rows("aime24"), "AIME 2024 (held-out only)", held_out_only=True)
register_rows_source("humaneval", lambda cfg: humaneval_rows(cfg.path or None), "HumanEval (held-out only)",
                     held_out_only=True)
register_rows_source("jsonl", dataset_rows, "a JSONL file at task.path")
register_rows_source("hf", dataset_rows, "a Hub id, a datasets folder, or a Parquet / CSV / JSON / JSONL file")
