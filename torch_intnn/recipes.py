"""Where the recipes are, so that ``intnn fit --config NAME`` works from any directory.

The recipes live in ``recipes/`` at the top of the source tree (an editable or source install reads them
there); a wheel installs them under ``<prefix>/share/torch_intnn/recipes`` (``pyproject.toml``'s data files).
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["recipe_dirs", "list_recipes", "find_recipe", "summary"]


def recipe_dirs() -> list[Path]:
    """The folders that hold the recipes, the source tree's first."""
    candidates = [Path(__file__).resolve().parents[1] / "recipes", Path(sys.prefix) / "share" / "torch_intnn" / "recipes"]
    return [d for d in candidates if d.is_dir()]


def list_recipes() -> dict[str, Path]:
    """Recipe name (the file's stem) -> its file, for every recipe found."""
    found: dict[str, Path] = {}
    for folder in recipe_dirs():
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def find_recipe(name_or_path: str) -> Path | None:
    """``name_or_path`` itself if it is a file, else the recipe of that name (with or without ``.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    return list_recipes().get(path.name.removesuffix(".yaml"))


def summary(path: Path) -> str:
    """The first line of a recipe's leading comment."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""
