"""`r1lab recipes`: the recipes that ship with r1lab, by name (what `-c NAME` takes)."""
from __future__ import annotations

from r1lab.cli.errors import console


def recipes() -> None:
    """List the bundled recipes: `r1lab zero -c zero_smollm2` runs one; a YAML file path works too (and wins)."""
    from rich.table import Table

    from r1lab.resources import RECIPES, recipe_names

    table = Table(title=f"recipes in {RECIPES}", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("what it runs")
    for name, description in recipe_names():
        table.add_row(name, description)
    console.print(table)
