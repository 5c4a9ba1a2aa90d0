"""Read a run directory (GRPO, SFT or anything that logs metrics.jsonl) into plain data for the report.

Every file is optional: a run with no samples, no config or no metrics still loads, so a report can
be drawn for a run that is still going, was killed, or comes from another trainer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from r1lab.eval.metrics import wilson_interval
from r1lab.runs import read_jsonl_records
from r1lab.runs.plot import PREFERRED

RUN_FILES = ("metrics.jsonl", "samples.jsonl", "config.yaml", "aha.jsonl")

# Curves are grouped by their prefix ("reward/total" -> reward); keys without one are optimiser stats.
GROUP_TITLES = {
    "reward": "Rewards (per function)",
    "train": "Train batch: accuracy and format",
    "eval": "Held-out evaluation",
    "completion": "Completions: length and truncation",
    "aha": "Aha lens: reflection and correctness",
    "optimization": "Optimisation: loss, KL, entropy, clipping",
    "groups": "GRPO groups",
    "time": "Time and throughput",
}
UNPREFIXED_GROUP = {"tokens_per_s": "time"}


@dataclass
class RunData:
    name: str
    root: Path
    config_text: str = ""
    config: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    aha: list[dict] = field(default_factory=list)

    def metric_keys(self) -> list[str]:
        keys = {k for r in self.metrics for k, v in r.items() if k != "step" and _number(v) is not None}
        return sorted(keys)

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """(steps, values) of a metric; non-finite values are skipped, a step logged twice keeps its last value."""
        points: dict[float, float] = {}
        for r in self.metrics:
            value, step = _number(r.get(key)), _number(r.get("step"))
            if value is not None and step is not None:
                points[step] = value
        steps = sorted(points)
        return steps, [points[s] for s in steps]

    def last_step(self) -> int | None:
        steps = [s for r in self.metrics + self.samples if (s := _number(r.get("step"))) is not None]
        return int(max(steps)) if steps else None


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def load_run(path: str | Path, name: str | None = None) -> RunData:
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run directory")
    if not any((root / f).is_file() for f in RUN_FILES):
        raise FileNotFoundError(f"{root}: not a run directory (none of {', '.join(RUN_FILES)} in it)")
    config_text, config = "", {}
    if (root / "config.yaml").is_file():
        config_text = (root / "config.yaml").read_text(encoding="utf-8")
        try:
            loaded = yaml.safe_load(config_text)
            config = loaded if isinstance(loaded, dict) else {}
        except yaml.YAMLError:
            config = {}  # shown as text anyway
    return RunData(name or root.resolve().name, root, config_text, config,
                   read_jsonl_records(root / "metrics.jsonl"), read_jsonl_records(root / "samples.jsonl"),
                   read_jsonl_records(root / "aha.jsonl"))


def load_runs(paths: list[str | Path]) -> list[RunData]:
    """Load several runs with distinct display names (a clash gets the parent folder, then a number)."""
    roots = [Path(p) for p in paths]
    names = [r.resolve().name for r in roots]
    for i, root in enumerate(roots):
        if names.count(names[i]) > 1:
            names[i] = f"{root.resolve().parent.name}/{root.resolve().name}"
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            names[i] = f"{n} ({seen[n]})"
    return [load_run(p, n) for p, n in zip(roots, names)]


# ---------------------------------------------------------------------------- metric vocabulary
def group_of(key: str) -> str:
    if "/" in key:
        return key.split("/", 1)[0]
    return UNPREFIXED_GROUP.get(key, "optimization")


def n_key(key: str, keys: set[str] | list[str]) -> str | None:
    """The metric holding the number of trials behind an accuracy: `KEY_n`, else `PREFIX/n` ("eval/n")."""
    if "accuracy" not in key.rsplit("/", 1)[-1] or key.endswith("_n"):
        return None
    if f"{key}_n" in keys:
        return f"{key}_n"
    if "/" in key and f"{key.split('/', 1)[0]}/n" in keys:
        return f"{key.split('/', 1)[0]}/n"
    return None


def is_count_companion(key: str, keys: set[str] | list[str]) -> bool:
    """`eval/n`, `aha/accuracy_with_reflection_n`: trial counts shown in tables, not drawn as curves."""
    return key.endswith("/n") or (key.endswith("_n") and (key[:-2] in keys or "accuracy" in key))


def grouped_keys(keys: list[str]) -> list[tuple[str, list[str]]]:
    """[(group, [keys…])] in reading order: reward, train, eval, completion, aha, optimisation, groups, time, others."""
    drawn = [k for k in keys if not is_count_companion(k, keys)]
    groups: dict[str, list[str]] = {}
    for k in drawn:
        groups.setdefault(group_of(k), []).append(k)
    order = [g for g in GROUP_TITLES if g in groups] + sorted(g for g in groups if g not in GROUP_TITLES)
    rank = {k: i for i, k in enumerate(PREFERRED)}
    return [(g, sorted(groups[g], key=lambda k: (rank.get(k, len(rank)), k))) for g in order]


def reward_summaries(run: RunData) -> list[tuple[str, float, float, float]]:
    """(name, last mean, last std, failures over all steps) per reward function, from the trainer's
    `reward/<name>`, `reward/<name>_std` and `reward/<name>_failures`."""
    keys = set(run.metric_keys())
    out = []
    for key in sorted(keys):
        name = key.removeprefix("reward/")
        if not key.startswith("reward/") or f"{key}_std" not in keys or name == "total":
            continue
        _, means = run.series(key)
        _, stds = run.series(f"{key}_std")
        _, failures = run.series(f"{key}_failures")
        if means:
            out.append((name, means[-1], stds[-1] if stds else math.nan, sum(failures)))
    return out


def wilson(value: float, n: float) -> tuple[int, int, float, float] | None:
    """(successes, n, low, high) for a rate measured on n trials, or None when n is not a positive count."""
    trials = int(round(n))
    if trials <= 0:
        return None
    successes = min(trials, max(0, int(round(value * trials))))
    low, high = wilson_interval(successes, trials)
    return successes, trials, low, high
