"""Every `r1lab` command in the README and docs/ runs as written, up to the library call it makes.

Each fenced shell line that starts with `r1lab` goes through the real CLI (flags, recipe lookup, config
fields and their types); the library entry point is replaced by a recorder, and what it would have run is
then resolved for real: the task (`task.source` / `-b`) and every reward. Synopsis lines (`[--k 8]`,
`(A | B)`, `NAME`) are skipped and counted below; commands that reach outside (a teacher endpoint) stop
at the recorder like every other. The end-to-end runs themselves are tested elsewhere on tiny models.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner
from unittest.mock import MagicMock

from r1lab import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
COMMAND = re.compile(r"r1lab (zero|sft|eval|serve|generate|reject|distill|pipeline|report|recipes|paper-mini)\b")
SYNOPSIS = re.compile(r"\[|\]|\(|\)|\|| \.\.\.|<|>|\bNAME\b|\bMODEL\b|\bURL\b|\bFILE\b|\b[A-Z]\b")


def fenced_commands(path: Path) -> list[str]:
    """`r1lab …` lines inside ``` fences, with `\\` continuations joined."""
    lines, inside, pending = [], False, ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if COMMAND.match(text):  # not a benchmark's output table that happens to start with "r1lab"
            lines.append(text)
    return lines


def documented() -> list[tuple[str, str]]:
    return [(f"{p.relative_to(ROOT)}: {c}", c) for p in DOCS for c in fenced_commands(p)]


def argv_of(command: str) -> list[str] | None:
    """The command's arguments, or None for a synopsis line (placeholders, alternatives, optional parts)."""
    words = shlex.split(command.replace('"$KEY"', "secret").replace("$KEY", "secret"), comments=True)
    words = [w for w in words if w != "&"]
    if SYNOPSIS.search(" ".join(words)):
        return None
    return words[1:]


class Recorder:
    """Stands in for the library calls the commands make; keeps the config each was given."""

    TARGETS = {  # command -> (module, attribute) the CLI calls
        "zero": ("r1lab.rl.trainer", "train_zero"), "sft": ("r1lab.sft", "train_sft"),
        "eval": ("r1lab.eval", "run_eval"), "eval compare": ("r1lab.eval", "load_summary"),
        "serve": ("r1lab.serve.app", "run_server"), "pipeline": ("r1lab.pipeline.r1", "run_r1"),
        "distill": ("r1lab.pipeline.distill", "run_distill"),
        "paper-mini": ("r1lab.pipeline.paper_mini", "run_paper_mini"),
        "generate": ("r1lab.pipeline.generate", "generate_traces"),
        "reject": ("r1lab.pipeline.rejection", "reject_file"), "report": ("r1lab.report", "write_report"),
    }

    def __init__(self, monkeypatch):
        import importlib

        self.calls: list[tuple[str, object]] = []
        for name, (module, attribute) in self.TARGETS.items():
            monkeypatch.setattr(importlib.import_module(module), attribute, self._recorder(name))
        from r1lab.cli import evaluate
        from r1lab.eval import report

        monkeypatch.setattr(evaluate, "_build_engine", lambda *a, **k: (None, None))  # loads no model
        monkeypatch.setattr(report, "summary_table", lambda *a: "")
        monkeypatch.setattr(report, "comparison_table", lambda *a: "")

    def _recorder(self, name: str):
        staged = name in ("pipeline", "distill", "paper-mini")  # their CLI prints the summary file a run writes

        def call(cfg=None, *args, **kwargs):
            self.calls.append((name, cfg))
            return None if staged else MagicMock()
        return call


def resolve_for_real(name: str, cfg) -> None:
    """What the recorded call would have loaded first: its task and its rewards."""
    from r1lab.config import config_dir
    from r1lab.data import load_task
    from r1lab.eval.benchmarks import BenchmarkSpec, load_benchmark
    from r1lab.rewards import load_rewards

    if name == "zero":
        task = load_task(cfg.task)
        assert task.train, f"{cfg.task}: nothing to train on"
        load_rewards(cfg.rewards, config_dir(cfg))
    elif name == "eval":
        rows = load_benchmark(BenchmarkSpec(cfg.benchmark, cfg.data, cfg.prompt_field, cfg.answer_field,
                                            cfg.verifier, cfg.seed, cfg.task_kwargs, cfg.limit or 4))
        assert rows


@pytest.mark.parametrize("where,command", documented(), ids=[w for w, _ in documented()])
def test_documented_command_runs_as_written(where, command, monkeypatch, tmp_path):
    argv = argv_of(command)
    if argv is None:
        return  # a synopsis: its flags are the real commands' flags, checked where those are written out
    monkeypatch.chdir(tmp_path)  # from outside the checkout: recipes and data must come from the package
    recorder = Recorder(monkeypatch)
    result = CliRunner().invoke(cli.app, argv, catch_exceptions=False)
    assert result.exit_code == 0, f"{where}\n{result.output}"
    assert recorder.calls, f"{where}: reached no library call"
    for name, cfg in recorder.calls:
        resolve_for_real(name, cfg)


def test_the_docs_show_commands_and_most_run_as_written():
    commands = documented()
    runnable = [c for _, c in commands if argv_of(c) is not None]
    assert len(commands) >= 20 and len(runnable) >= 0.75 * len(commands), (len(commands), len(runnable))


def test_zero_and_eval_default_to_the_native_engine_with_the_transformers_fallback(monkeypatch, tmp_path):
    """No --engine: training samples with `auto` (native where it knows the model), and so does eval."""
    from r1lab.rl.config import ZeroConfig
    from r1lab.rollout import factory

    assert ZeroConfig().engine == "auto"
    monkeypatch.chdir(tmp_path)
    built = []  # the engine names eval asks the factory for
    monkeypatch.setattr(factory, "make_engine", lambda name, *a, **k: built.append(name) or MagicMock())
    import r1lab.eval
    import r1lab.models

    monkeypatch.setattr(r1lab.models, "load_model", lambda *a, **k: MagicMock())
    monkeypatch.setattr(r1lab.models, "load_tokenizer", lambda *a, **k: MagicMock())
    monkeypatch.setattr(r1lab.eval, "run_eval", lambda *a, **k: MagicMock())
    from r1lab.eval import report

    monkeypatch.setattr(report, "summary_table", lambda *a: "")
    result = CliRunner().invoke(cli.app, ["eval", "-m", "tiny-llama", "-b", "gsm8k", "--limit", "1"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert built == ["auto"]
