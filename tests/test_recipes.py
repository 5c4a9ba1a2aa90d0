"""Every recipe under recipes/ loads into its typed config (a typo in a field fails here, not mid-run)."""
from pathlib import Path

import pytest

from r1lab.config import load_config
from r1lab.pipeline.config import DistillConfig, R1Config
from r1lab.pipeline.paper_mini import PaperMiniConfig
from r1lab.rl.config import ZeroConfig
from r1lab.sft.config import SFTConfig

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
KINDS = {"zero": ZeroConfig, "r1": R1Config, "distill": DistillConfig, "sft": SFTConfig, "paper": PaperMiniConfig}


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_recipe_loads_into_its_config(path):
    cls = KINDS[path.name.split("_")[0]]
    assert isinstance(load_config(cls, path), cls)
