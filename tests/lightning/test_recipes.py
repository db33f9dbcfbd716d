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


def _cnn_recipes():
    import yaml

    for recipe in RECIPES:
        config = yaml.safe_load(recipe.read_text())
        model = config["model"]
        if model["class_path"].endswith("IntegerClassifier") and any(
                key in model["init_args"]["model"] for key in ("cnn", "vgg")):
            yield recipe, config


@pytest.mark.parametrize("rule", ["bp", "les"])
def test_every_cnn_recipe_has_float_twins_on_the_same_data_and_budget(rule):
    """recipes/X.yaml (an integer CNN) has X_float_bp.yaml and X_float_les.yaml: the integer model's float twin,
    the same DataModule, batch size, validation split and time budget, and for LES the same local loss. A recipe
    that changes only the local loss (X_predsim.yaml) shares X's backprop twin."""
    import yaml

    pairs = list(_cnn_recipes())
    assert len(pairs) >= 8
    for recipe, config in pairs:
        local_loss = config["model"]["init_args"]["rule"]["init_args"].get("local_loss", "pred")
        stem = recipe.stem.removesuffix(f"_{local_loss}") if rule == "bp" else recipe.stem
        twin_path = recipe.with_name(f"{stem}_float_{rule}.yaml")
        assert twin_path.exists(), f"{recipe.name} has no float-{rule} twin recipe"
        twin = yaml.safe_load(twin_path.read_text())
        assert twin["model"]["init_args"]["model"] == config["model"]["init_args"]["model"] + "_float"
        assert twin["model"]["init_args"]["rule"] == rule
        if rule == "les":
            assert twin["model"]["init_args"].get("les_loss", "pred") == local_loss, twin_path.name
        assert twin["data"] == config["data"], twin_path.name
        assert twin["trainer"].get("max_time") == config["trainer"].get("max_time"), twin_path.name
        if "small" in recipe.stem:  # the twin builds, with its heads (VGG twins: test_float_twins builds them)
            from torch_intnn.lightning import FloatClassifier

            module = FloatClassifier(**twin["model"]["init_args"])
            assert (rule == "les") == hasattr(module, "heads")
