"""Opening a run directory for training: a new run, or `--resume` of the same experiment.

- `--resume` where there is no run starts a new one (`make demo` and the pipeline stages rely on that) and says so.
- A resume finds the newest complete checkpoint, not only what `latest` says, and first removes what killed
  saves left behind (`RunDir.clean_stale`).
- A resume whose config differs from the run's config.yaml in a field that defines the experiment (lr, group
  size, model, loss...) is refused, naming the fields: the old optimizer state and config.yaml would silently
  win. Fields that only say how long, how often or where (steps, logging, eval cadence, output, threads,
  engine) may change.
- A run that fails before it starts leaves no directory behind (`removed_on_failure`).
"""
from __future__ import annotations

import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from r1lab import dist
from r1lab.config import ConfigError, to_yaml
from r1lab.runs.rundir import RunDir

# Dotted config fields (or whole sections) a resumed run may change. The trainers' configs share these names:
# GRPO (grpo.steps) and SFT (train.steps / train.epochs: how long), run.* (output, logging, cadence), and how the
# work is cut: grpo.micro_batch_size / _tokens only bound memory (gradients accumulate under one batch-wide
# normaliser).
MAY_CHANGE = ("grpo.steps", "grpo.micro_batch_size", "grpo.micro_batch_tokens", "train.steps", "train.epochs", "run",
              "threads", "engine", "engine_options", "fsdp")
# ...except these, which change what the held-out numbers measure: curves before and after would not compare.
FIXED = ("run.eval_size", "run.eval_temperature")


def _matches(key: str, names: tuple[str, ...]) -> bool:
    return any(key == name or key.startswith(name + ".") for name in names)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def config_changes(saved: dict, current: dict) -> list[str]:
    """`field: old -> new` for every field that differs and may not change. A field missing from the saved
    config (added to r1lab after that run started) is not a change."""
    old, new = _flatten(saved), _flatten(current)
    return [f"{key}: {old[key]!r} -> {new.get(key)!r}" for key in old
            if key in new and old[key] != new[key] and (_matches(key, FIXED) or not _matches(key, MAY_CHANGE))]


def check_same_experiment(run: RunDir, cfg: Any) -> None:
    path = run.root / "config.yaml"
    if not path.is_file():
        return
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML, cannot check the resumed config against it: {err}") from None
    current = yaml.safe_load(to_yaml(cfg))  # through YAML, as saved: tuples are lists, floats read back equal
    changed = config_changes(saved, current)
    if changed:
        raise ConfigError(f"{run.root}: --resume with a config that differs from the run's config.yaml "
                          f"({'; '.join(changed)}); only steps, run.* (logging, cadence, output), threads and the "
                          "engine may change: pass the run's values or start a new run in another output_dir")


def _decide(run: RunDir, cfg: Any, resume: bool) -> Path | None:
    checkpoint = run.latest_checkpoint()
    if not resume:
        if checkpoint is not None or run.metrics_path.exists():
            raise FileExistsError(f"{run.root} already holds a run; pass --resume to continue it or pick another "
                                  "output_dir")
        return None
    if checkpoint is None:
        print(f"--resume: no checkpoint in {run.root}; starting a new run", file=sys.stderr)
        return None
    check_same_experiment(run, cfg)
    run.clean_stale()
    print(f"--resume: continuing {run.root} from {checkpoint.name}", file=sys.stderr)
    return checkpoint


def open_run(run: RunDir, cfg: Any, resume: bool) -> Path | None:
    """The checkpoint to resume from (None: a new run), decided by rank 0 for every rank before anyone writes.
    Raises FileExistsError for a new run in a taken directory, ConfigError for a changed resumed config."""
    return dist.on_rank0(lambda: _decide(run, cfg, resume))


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet: what creating `path` would add."""
    path = path.absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


@contextmanager
def removed_on_failure(root: str | Path, is_writer: bool = True) -> Iterator[None]:
    """If the body fails, delete the folders it created for `root` (only those: a folder that existed before is
    kept), so that a run that could not start leaves nothing to clean up or to mistake for a run."""
    created = _first_missing(Path(root))
    try:
        yield
    except BaseException:
        if is_writer and created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
