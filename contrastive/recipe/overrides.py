"""The dotted-key grammar of command line overrides: ``--loss.args.temperature 0.2``,
``--augmentation.2.args.p=0.5`` ([`parse_overrides`][contrastive.recipe.overrides.parse_overrides], values read as YAML), setting them on a
raw recipe mapping ([`apply_overrides`][contrastive.recipe.overrides.apply_overrides]), and the reverse view of a recipe as dotted keys
([`flatten`][contrastive.recipe.overrides.flatten])."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from contrastive.errors import RecipeError, did_you_mean
from contrastive.recipe import yaml_values
from contrastive.recipe.schema import TOP_LEVEL_KEYS


def parse_overrides(tokens: list[str]) -> list[tuple[str, Any]]:
    """Turn ``["--a.b", "1", "--c=x"]`` into ``[("a.b", 1), ("c", "x")]``; values are YAML."""
    pairs: list[tuple[str, Any]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise RecipeError(f"unexpected argument '{token}': overrides look like --trainer.max_epochs 1")
        key = token[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens) or (tokens[i + 1].startswith("--") and len(tokens[i + 1]) > 2):
                raise RecipeError(f"override --{key} needs a value, e.g. --{key} VALUE")
            raw = tokens[i + 1]
            i += 2
        try:
            value = yaml_values.load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        pairs.append((key, value))
    return pairs


def apply_overrides(recipe: dict[str, Any], overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    """Return a copy of ``recipe`` with each dotted ``key`` set to its value."""
    result = copy.deepcopy(recipe)
    for key, value in overrides:
        parts = key.split(".")
        if parts[0] not in TOP_LEVEL_KEYS:
            raise RecipeError(
                f"unknown recipe key '{parts[0]}'{did_you_mean(parts[0], TOP_LEVEL_KEYS)} "
                f"(recipe keys: {', '.join(TOP_LEVEL_KEYS)})"
            )
        node: Any = result
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[: depth + 1]), create=True)
        last = parts[-1]
        if isinstance(node, list):
            index = _index(node, last, key)
            node[index] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise RecipeError(f"cannot set --{key}: '{'.'.join(parts[:-1])}' is a {type(node).__name__}, not a mapping")
    return result


def _index(node: list, part: str, where: str) -> int:
    try:
        index = int(part)
    except ValueError:
        raise RecipeError(f"'{where}': '{part}' must be a list index (0..{len(node) - 1})") from None
    if not -len(node) <= index < len(node):
        raise RecipeError(f"'{where}': index {index} out of range, the list has {len(node)} entries")
    return index


def _child(node: Any, part: str, where: str, create: bool) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, where)]
    if isinstance(node, dict):
        if part not in node or node[part] is None:
            if not create:
                raise RecipeError(f"no key '{where}'")
            node[part] = {}
        return node[part]
    raise RecipeError(f"cannot descend into '{where}': its parent is a {type(node).__name__}")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested recipe mapping as ``{"loss.args.temperature": 0.5, "augmentation.0.name": ...}``;
    list items by index; an empty mapping or list stays a leaf (so that it can differ)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(value, (list, tuple)):
        out = {}
        for index, inner in enumerate(value):
            out.update(flatten(inner, f"{prefix}.{index}"))
        return out or {prefix: []}
    return {prefix: value}
