"""User code by reference: `package.module:function` or `path/to/file.py:function`.

Rewards, tasks and row transforms can live in the user's own files, as in TRL. A file path is looked
up relative to the recipe's folder first, then the working directory; a file is imported once per
process (under a module name derived from its absolute path), so its registrations and state are shared.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable, Sequence


class UnresolvedReference(ValueError):
    """A `module:function` or `file.py:function` reference that cannot be resolved; the message says why."""


def is_reference(text: str) -> bool:
    """`a.b:fn` or `dir/f.py:fn`; a hub id (`org/name`) or a registered name has no colon."""
    target, sep, attr = text.rpartition(":")
    return bool(sep and target and attr.isidentifier())


def _is_file_target(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def find_file(target: str, base_dirs: Sequence[Path | str | None]) -> Path | None:
    """`target` relative to each base folder in turn, then the working directory (absolute paths as they are)."""
    path = Path(target).expanduser()
    if path.is_absolute():
        return path if path.is_file() else None
    for base in [*(b for b in base_dirs if b), Path.cwd()]:
        candidate = Path(base) / path
        if candidate.is_file():
            return candidate.resolve()
    return None


def _import_file(path: Path, ref: str):
    name = "r1lab_user_" + path.stem.replace("-", "_") + "_" + hashlib.blake2b(str(path).encode(), digest_size=4).hexdigest()
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise UnresolvedReference(f"{ref}: importing {path} failed: {type(err).__name__}: {err}") from None
    return module


def _import_module(target: str, ref: str):
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as err:
        raise UnresolvedReference(f"{ref}: cannot import module {target!r} ({err}); write package.module:function, "
                              "or path/to/file.py:function") from None
    except Exception as err:
        raise UnresolvedReference(f"{ref}: importing {target} failed: {type(err).__name__}: {err}") from None


def resolve_callable(ref: str, base_dirs: Sequence[Path | str | None] = ()) -> Callable:
    """The function `ref` names; UnresolvedReference (a ValueError) naming what is missing and what exists."""
    if not is_reference(ref):
        raise UnresolvedReference(f"{ref!r}: expected package.module:function or path/to/file.py:function")
    target, _, attr = ref.rpartition(":")
    if _is_file_target(target):
        path = find_file(target, base_dirs)
        if path is None:
            places = ", ".join(str(b) for b in [*(b for b in base_dirs if b), Path.cwd()])
            raise UnresolvedReference(f"{ref}: file {target} not found (looked in {places})")
        module, where = _import_file(path, ref), str(path)
    else:
        module, where = _import_module(target, ref), target
    fn = getattr(module, attr, None)
    if fn is None:
        defined = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                         and getattr(v, "__module__", None) == module.__name__)
        raise UnresolvedReference(f"{ref}: {where} has no function {attr!r}; it defines: {', '.join(defined) or 'none'}")
    if not callable(fn):
        raise UnresolvedReference(f"{ref}: {attr} in {where} is a {type(fn).__name__}, not a function")
    return fn
