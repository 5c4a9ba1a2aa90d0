"""Staged runs that survive interruption: each stage owns a directory and a `stage.json` written last.

A stage whose `stage.json` exists is finished and is skipped on rerun (its record is returned);
an interrupted stage is simply called again, and the trainers and generators it calls resume from
their own checkpoints and output files. Wall time adds up over the sessions a stage took.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from r1lab import dist
from r1lab.runs.rundir import atomic_write_text

RECORD = "stage.json"
ELAPSED = ".elapsed_s"  # seconds spent in earlier, interrupted sessions of a stage


class Stages:
    def __init__(self, root: str | Path, is_writer: bool = True, log: Callable[[str], None] = print):
        self.root = Path(root)
        self.is_writer = is_writer
        self.log = log if is_writer else (lambda _: None)

    def dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def record(self, name: str) -> dict | None:
        path = self.root / name / RECORD
        return json.loads(path.read_text()) if path.is_file() else None

    def run(self, name: str, body: Callable[[Path], dict]) -> dict:
        """Run `body(stage_dir)` unless the stage finished before; returns its record (body's dict + seconds)."""
        done = dist.on_rank0(lambda: self.record(name))  # one decision for all ranks: rank 0 writes the records
        if done is not None:
            self.log(f"stage {name}: done before ({done['seconds']:.0f} s), skipped")
            return done
        stage_dir = self.dir(name)
        elapsed_path = stage_dir / ELAPSED
        before = float(elapsed_path.read_text()) if elapsed_path.is_file() else 0.0
        self.log(f"stage {name}: {'resuming' if before else 'starting'}")
        started = time.perf_counter()
        try:
            result = body(stage_dir)
        except BaseException:
            if self.is_writer:  # an interrupted stage keeps the time it already cost
                atomic_write_text(elapsed_path, str(before + time.perf_counter() - started))
            raise
        record = {"stage": name, **result, "seconds": before + time.perf_counter() - started}
        if self.is_writer:
            atomic_write_text(stage_dir / RECORD, json.dumps(record, indent=2) + "\n")
            elapsed_path.unlink(missing_ok=True)
        self.log(f"stage {name}: finished in {record['seconds']:.0f} s")
        return record
