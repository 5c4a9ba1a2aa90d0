"""RunDir: the one place a run writes files. Rank 0 writes; every write that matters is atomic."""
from __future__ import annotations

import errno
import json
import math
import os
import random
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

CHECKPOINT_PREFIX = "step-"
STEP_LOGS = ("metrics.jsonl", "samples.jsonl", "aha.jsonl")  # step-tagged logs; resuming drops their newer rows


@contextmanager
def naming_errors(path: Path) -> Iterator[None]:
    """An OSError while writing `path` names it: a full disk fails in write(), whose error carries no file name."""
    try:
        yield
    except OSError as err:
        if err.filename is None:
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with naming_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)  # no `.name.xxxx` left behind
            raise


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


class RunDir:
    """metrics.jsonl, samples.jsonl, config.yaml, checkpoints/step-N/ (+ `latest`), plot.png; with
    `tensorboard=True` every metric is also a TensorBoard scalar under tensorboard/."""

    def __init__(self, root: str | Path, rank: int = 0, tensorboard: bool = False):
        self.root = Path(root)
        self.rank = rank
        self.is_writer = rank == 0
        self._tensorboard = None
        if self.is_writer:
            self.root.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                self._tensorboard = tensorboard_writer(self.root / "tensorboard")

    # ------------------------------------------------------------------ logs
    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def samples_path(self) -> Path:
        return self.root / "samples.jsonl"

    def write_text(self, name: str, text: str) -> None:
        if self.is_writer:
            atomic_write_text(self.root / name, text)

    def _append(self, path: Path, records: list[dict]) -> None:
        if not self.is_writer or not records:
            return
        with naming_errors(path), path.open("a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self._append(self.metrics_path, [{"step": step, **metrics}])
        if self._tensorboard is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._tensorboard.add_scalar(key, value, step)
            self._tensorboard.flush()

    def log_records(self, filename: str, step: int, records: list[dict]) -> None:
        """Append step-tagged records to a JSONL log in the run dir (e.g. aha.jsonl; list it in STEP_LOGS
        so that resuming drops rows newer than the checkpoint)."""
        self._append(self.root / filename, [{"step": step, **r} for r in records])

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def log_samples(self, step: int, samples: list[dict]) -> None:
        self._append(self.samples_path, [{"step": step, **s} for s in samples])

    def read_metrics(self) -> list[dict]:
        return read_jsonl_records(self.metrics_path)

    def truncate_after(self, step: int) -> None:
        """Drop log rows newer than `step`: a killed run may have logged past its last checkpoint."""
        if not self.is_writer:
            return
        for path in (self.root / name for name in STEP_LOGS):
            if path.exists():
                kept = [r for r in read_jsonl_records(path) if r.get("step", 0) <= step]
                atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def save_checkpoint(self, step: int, model, tokenizer, state: dict[str, Any], keep: int = 2,
                        extra: Callable[[Path], None] | None = None) -> Path | None:
        """Weights (safetensors, loadable by plain transformers), tokenizer and trainer state, renamed into place.

        `extra(folder)` adds files before the rename (FSDP: the optimizer shards every rank wrote).
        """
        if not self.is_writer:
            return None
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        final = self.checkpoints / f"{CHECKPOINT_PREFIX}{step:06d}"
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.checkpoints))
        try:
            self._write_checkpoint(tmp, final, model, tokenizer, state, extra)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            for stale in self.checkpoints.glob(".tmp-old-*"):
                shutil.rmtree(stale, ignore_errors=True)
        atomic_write_text(self.checkpoints / "latest", final.name + "\n")
        for old in sorted(self.checkpoints.glob(f"{CHECKPOINT_PREFIX}*"), key=checkpoint_step)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def _write_checkpoint(self, tmp: Path, final: Path, model, tokenizer, state: dict[str, Any],
                          extra: Callable[[Path], None] | None) -> None:
        from safetensors import SafetensorError

        # A full disk reaches us as OSError without a file name, SafetensorError, or torch.save's RuntimeError:
        # each becomes one OSError naming the checkpoint.
        with naming_errors(final):
            try:
                model.save_pretrained(tmp, safe_serialization=True)
                if tokenizer is not None:
                    tokenizer.save_pretrained(tmp)
                torch.save(state, tmp / "trainer_state.pt")
            except (SafetensorError, RuntimeError) as err:
                raise OSError(errno.EIO, f"cannot write the checkpoint: {err}", str(final)) from err
            if extra is not None:
                extra(tmp)
            if final.exists():  # renamed away first: a kill mid-delete must not leave a half step dir behind
                stale = Path(tempfile.mkdtemp(prefix=".tmp-old-", dir=self.checkpoints))
                os.replace(final, stale / final.name)
            os.replace(tmp, final)

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint. Step dirs arrive complete by rename and `latest` is updated after it,
        so a kill in between leaves `latest` one checkpoint behind: the step dirs, not the pointer, decide."""
        found = [p for p in self.checkpoints.glob(f"{CHECKPOINT_PREFIX}*") if (p / "trainer_state.pt").is_file()]
        return max(found, key=checkpoint_step, default=None)

    def clean_stale(self) -> None:
        """Before resuming: delete what killed saves left (`.tmp-*` checkpoint dirs, `.latest.*` and other
        half-written temporary files) and point `latest` at the newest complete checkpoint."""
        if not self.is_writer:
            return
        for name in (*STEP_LOGS, "config.yaml"):  # atomic_write_text's temporary files, cut by a kill
            for leftover in self.root.glob(f".{name}.*"):
                leftover.unlink(missing_ok=True)
        if not self.checkpoints.is_dir():
            return
        for leftover in self.checkpoints.glob(".*"):  # checkpoints/ holds nothing but what save_checkpoint writes
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        newest = self.latest_checkpoint()
        pointer = self.checkpoints / "latest"
        if newest is not None and (not pointer.is_file() or pointer.read_text().strip() != newest.name):
            atomic_write_text(pointer, newest.name + "\n")

    @staticmethod
    def load_state(checkpoint: Path) -> dict[str, Any]:
        # on the CPU: every rank reads it, and optimizer.load_state_dict moves state to each parameter's device
        return torch.load(checkpoint / "trainer_state.pt", map_location="cpu", weights_only=False)


def checkpoint_step(path: Path) -> int:
    """step-000010 -> 10 (numeric, so that step 1000000 sorts after step 999999)."""
    suffix = path.name.removeprefix(CHECKPOINT_PREFIX)
    return int(suffix) if suffix.isdigit() else -1


def tensorboard_writer(log_dir: Path):
    """A torch SummaryWriter; the `tensorboard` package it needs is an optional extra."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError("run.tensorboard needs the tensorboard package: pip install 'r1lab[tensorboard]' "
                          "(or pip install tensorboard)") from err
    return SummaryWriter(log_dir=str(log_dir))


def read_jsonl_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill mid-write; the rows before it are intact
    return out
