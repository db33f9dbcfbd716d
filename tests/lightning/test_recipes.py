"""Every recipe parses: LightningCLI accepts its keys and types (a typo in a recipe fails here, not in a run)."""

from pathlib import Path

import pytest

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 20


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses(recipe, capsys):
    from torch_intnn.lightning.cli import run

    with pytest.raises(SystemExit) as exit_:
        run(["fit", "--config", str(recipe), "--print_config"])
    assert exit_.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path: torch_intnn.lightning." in printed and "max_epochs" in printed
