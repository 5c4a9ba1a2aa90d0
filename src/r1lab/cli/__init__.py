"""The `r1lab` command. Each command parses flags into a config and calls one library function.

One module per stage of the data flow (train, evaluate, generate, pipeline, report, serve); errors go
through `r1lab.cli.errors`. Modules here import only typer and rich at the top: torch, transformers and
the library load inside the command that runs, so `r1lab --help` stays fast.
"""
from __future__ import annotations

import os
import sys

import typer

from r1lab.cli.evaluate import eval_app
from r1lab.cli.generate import generate, reject
from r1lab.cli.pipeline import distill, paper_mini, pipeline
from r1lab.cli.recipes import recipes
from r1lab.cli.report import report
from r1lab.cli.serve import serve
from r1lab.cli.train import sft, zero

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Reproduce DeepSeek-R1 on your own models: R1-Zero GRPO, the R1 recipe, distillation, eval, serving.")


@app.callback()
def _root() -> None:
    """Reproduce DeepSeek-R1 on your own models. Set R1LAB_DEBUG=1 for full tracebacks."""
    # r1lab draws its own progress; per-shard bars only add noise. The variable is read when transformers is
    # first imported; in a process that already imported it (tests), switch its bars off directly.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


for command in (zero, serve, sft, generate, reject, distill, pipeline, report, recipes):
    app.command()(command)
app.command("paper-mini")(paper_mini)
app.add_typer(eval_app, name="eval", help="pass@1 over k samples, cons@k, pass@k on a benchmark; `eval compare` runs.")

__all__ = ["app"]
