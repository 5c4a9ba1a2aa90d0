"""Every bundled recipe (r1lab/bundled/recipes/) loads into its typed config (a typo in a field fails here, not mid-run)."""
import pytest

from r1lab.config import load_config
from r1lab.pipeline.config import DistillConfig, R1Config
from r1lab.pipeline.paper_mini import PaperMiniConfig
from r1lab.resources import RECIPES, recipe_names, recipe_path
from r1lab.rl.config import ZeroConfig
from r1lab.sft.config import SFTConfig

KINDS = {"zero": ZeroConfig, "r1": R1Config, "distill": DistillConfig, "sft": SFTConfig, "paper": PaperMiniConfig}


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_recipe_loads_into_its_config(path):
    cls = KINDS[path.name.split("_")[0]]
    assert isinstance(load_config(cls, path), cls)


def test_recipes_are_found_by_name_and_a_file_path_wins(tmp_path, monkeypatch):
    assert recipe_path("zero_tiny") == RECIPES / "zero_tiny.yaml"
    assert recipe_path("recipes/zero_tiny.yaml") == RECIPES / "zero_tiny.yaml"  # the README's spelling, from anywhere
    monkeypatch.chdir(tmp_path)
    (tmp_path / "zero_tiny.yaml").write_text("grpo: {steps: 3}\n")
    assert recipe_path("zero_tiny.yaml").resolve() == tmp_path / "zero_tiny.yaml"
    assert load_config(ZeroConfig, "zero_tiny.yaml").grpo.steps == 3
    assert recipe_path("no_such_recipe") is None
    assert {name for name, _ in recipe_names()} >= {"zero_smollm2", "zero_tiny", "r1_tiny"}


def test_a_recipe_s_bundled_data_path_resolves_outside_the_checkout(tmp_path, monkeypatch):
    from r1lab.data import load_task

    monkeypatch.chdir(tmp_path)
    task = load_task(load_config(ZeroConfig, "zero_tiny").task)  # path: data/tiny/sevens.jsonl
    assert task.train and task.test


@pytest.mark.parametrize("name", ["paper_mini", "paper_mini_quick", "paper_mini_tiny"])
def test_a_paper_mini_recipe_compares_its_parts_on_one_task_and_prompt(name):
    """Parts b-d compare models across the three recipes: they must train and score on the same questions."""
    paper = load_config(PaperMiniConfig, name)
    zero, r1, distill = (load_config(ZeroConfig, paper.zero), load_config(R1Config, paper.r1),
                         load_config(DistillConfig, paper.distill))
    assert zero.task == r1.task == distill.task
    assert zero.prompt == r1.prompt == distill.prompt
    assert r1.eval.max_new_tokens == distill.eval.max_new_tokens >= zero.grpo.max_new_tokens
