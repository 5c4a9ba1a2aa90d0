"""Files that ship inside the package: the recipes and the vendored data (bundled/data/SOURCES.md).

A source checkout and an installed wheel find them the same way, beside this module. A path in a
recipe or on the command line is looked up where the user means it first (as given, then beside the
recipe), and only then inside the package: `recipes/zero_smollm2.yaml` and `data/tiny/sevens.jsonl`
work from any directory, and a user's own file of the same name wins.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

BUNDLED = Path(str(files("r1lab") / "bundled"))  # setuptools installs package data as plain files
RECIPES = BUNDLED / "recipes"
DATA = BUNDLED / "data"


def find_file(path: str | Path, base_dir: Path | None = None) -> Path:
    """The first of: `path` as given, `base_dir / path`, `bundled / path` that exists; else `path` unchanged
    (the caller's own not-found error then names what the user wrote)."""
    given = Path(path).expanduser()
    candidates = [given]
    if not given.is_absolute():
        candidates += [base_dir / given] if base_dir is not None else []
        candidates.append(BUNDLED / given)
    return next((c for c in candidates if c.exists()), given)


def recipe_path(name_or_path: str | Path) -> Path | None:
    """A recipe file: a path that exists wins; else a bundled recipe by name (`zero_smollm2`, with or
    without `.yaml`, or `recipes/zero_smollm2.yaml` as the README writes it); None if neither."""
    found = find_file(name_or_path)
    if found.is_file():
        return found
    name = Path(name_or_path).name
    bundled = RECIPES / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    return bundled if bundled.is_file() else None


def recipe_names() -> list[tuple[str, str]]:
    """(name, the first sentence of its leading comment) of every bundled recipe, sorted by name."""
    out = []
    for path in sorted(RECIPES.glob("*.yaml")):
        comment = []
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("#").strip())
        text = " ".join(comment)
        out.append((path.stem, text.split(". ")[0].rstrip(".") if text else ""))
    return out
