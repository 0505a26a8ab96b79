"""Reading recipes: a file or a built-in recipe by name ([`read_recipe`][contrastive.recipe.loading.read_recipe]), read, overridden
and validated in one call ([`load`][contrastive.recipe.loading.load]), and the resolved recipe written back as YAML ([`dump`][contrastive.recipe.loading.dump])."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from contrastive.errors import RecipeError, did_you_mean
from contrastive.recipe import yaml_values
from contrastive.recipe.overrides import apply_overrides, parse_overrides
from contrastive.recipe.schema import TOP_LEVEL_KEYS, Recipe
from contrastive.recipe.validation import validate

if TYPE_CHECKING:
    from contrastive.registry import Registries


def builtin_recipes() -> list[str]:
    """Names of the recipes shipped inside the package (``contrastive/recipes/*.yaml``)."""
    root = importlib.resources.files("contrastive") / "recipes"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def read_recipe(path_or_name: str | None) -> dict[str, Any]:
    """Read a recipe file, or a built-in recipe by name (``quickstart``); None -> quickstart."""
    if path_or_name is None:
        path_or_name = "quickstart"
    path = Path(path_or_name)
    if not path.exists():
        if path_or_name in builtin_recipes():
            text = (importlib.resources.files("contrastive") / "recipes" / f"{path_or_name}.yaml").read_text()
            return _parse(text, f"built-in recipe '{path_or_name}'")
        hint = did_you_mean(path.stem, builtin_recipes())
        raise RecipeError(
            f"recipe file '{path_or_name}' does not exist{hint} "
            f"(built-in recipes: {', '.join(builtin_recipes())}; pass a path or one of those names)"
        )
    if path.is_dir():
        raise RecipeError(f"recipe '{path_or_name}' is a directory; pass a YAML file")
    try:
        text = path.read_text()
    except OSError as exc:
        raise RecipeError(f"cannot read recipe '{path_or_name}': {exc.strerror}") from exc
    return _parse(text, f"recipe '{path_or_name}'")


def _parse(text: str, what: str) -> dict[str, Any]:
    try:
        data = yaml_values.load(text)
    except yaml.YAMLError as exc:  # one line: where and what, not PyYAML's multi-line excerpt
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).replace("\n", " ")
        raise RecipeError(f"{what} is not valid YAML{where}: {problem}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{what} must be a mapping of keys ({', '.join(TOP_LEVEL_KEYS)}), got {type(data).__name__}")
    return data


def load(path_or_name: str | None, overrides: list[str] | None = None, registries: Registries | None=None) -> Recipe:
    """Read, override and validate a recipe in one call."""
    raw = apply_overrides(read_recipe(path_or_name), parse_overrides(list(overrides or [])))
    return validate(raw, registries)


def dump(recipe: Recipe) -> str:
    """The resolved recipe as YAML, keys in recipe order."""
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False, default_flow_style=None)
