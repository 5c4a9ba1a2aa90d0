"""The one way a command reports a user mistake: `error: <one line>` on stderr, exit code 2, no traceback.

Every command runs its library call inside `with reported():`. R1LAB_DEBUG=1 re-raises for the full traceback.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console
from rich.markup import escape

# soft_wrap: a message is one line even when stderr is a file or a pipe (rich would wrap it at 80 columns)
console = Console(stderr=True, soft_wrap=True, highlight=False)

# r1lab's own user errors (ConfigError, TaskError, ModelNotFoundError, EvalError, EngineUnavailable) are
# ValueErrors; OSError covers unreadable inputs and unwritable outputs (a read-only folder, a full disk).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError, ImportError)
# RuntimeErrors that are user-facing too, named by module so that importing this file stays cheap: an error of
# one of these classes can only exist once its module has been imported.
_RUNTIME_USER_ERRORS = (("r1lab.pipeline.teachers", "TeacherError"), ("r1lab.pipeline.steps", "StageError"))


def is_user_error(err: BaseException) -> bool:
    if isinstance(err, USER_ERRORS):
        return True
    loaded = (getattr(sys.modules[m], name) for m, name in _RUNTIME_USER_ERRORS if m in sys.modules)
    return isinstance(err, tuple(loaded))


def error_message(err: BaseException) -> str:
    """The error as one line: KeyError without its quotes, OSError as `path: reason`."""
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    elif isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def fail(err: BaseException) -> None:
    if os.environ.get("R1LAB_DEBUG"):
        raise err
    console.print(f"[bold red]error:[/] {escape(error_message(err))}")
    raise typer.Exit(code=2)


@contextmanager
def reported() -> Iterator[None]:
    """Turn a user error raised inside into one `error:` line and exit code 2; anything else propagates."""
    try:
        yield
    except Exception as err:
        if not is_user_error(err):
            raise
        fail(err)
