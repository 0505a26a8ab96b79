"""Checks of a recipe against the registries: every component's name and arguments, schedules
at step 0 and at their extremes ([`check_components`][contrastive.recipe.checks.check_components]), ``eval.protocols`` ([`check_protocols`][contrastive.recipe.checks.check_protocols]) and the parts a method's
signature takes ([`method_parts`][contrastive.recipe.checks.method_parts]) — without building anything."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from contrastive.errors import ContrastiveError, RecipeError, did_you_mean
from contrastive.recipe.scheduled import SCHEDULED_COMPONENTS, check_against_factories, check_variants
from contrastive.recipe.schema import (
    COMPONENT_KINDS,
    INJECTED_ARGS,
    LABEL_FREE,
    METHOD_PARTS,
    OPTIONAL_COMPONENTS,
    Component,
    Recipe,
)

if TYPE_CHECKING:
    from contrastive.registry import Registries

#: Component keys whose arguments may hold schedules (checked at each value they reach).
VARIANT_KEYS = (*SCHEDULED_COMPONENTS, "optimizer")


def check_components(recipe: Recipe, registries: Registries) -> None:
    """Raise a [`RecipeError`][contrastive.errors.RecipeError] naming the recipe key for any unknown name or bad argument."""
    entries = [(key, kind, c) for key, kind in {**COMPONENT_KINDS, **OPTIONAL_COMPONENTS}.items()
               if (c := getattr(recipe, key)) is not None]
    entries += [(where, "augmentations", c) for where, c in _augmentation_entries(recipe)]
    entries += [(f"eval.{key}", "datasets", c) for key in ("train_data", "test_data") if (c := getattr(recipe.eval, key))]
    entries += [(f"callbacks.{i}", "callbacks", c) for i, c in enumerate(recipe.callbacks)]
    check_against_factories(recipe, registries)  # before the types: a schedule for an int argument says so
    for where, kind, component in entries:
        variants = check_variants(where, component) if where in VARIANT_KEYS else [("", component.args)]
        for context, args in variants:  # schedules: their values at step 0, then their extremes
            try:
                registries[kind].check_args(component.name, args, injected=INJECTED_ARGS.get(kind, ()))
            except ContrastiveError as exc:
                raise RecipeError(f"{context or where}: {exc}") from exc
        injected = set(INJECTED_ARGS.get(kind, ())) & set(component.args)
        if injected:
            raise RecipeError(f"{where}.args.{sorted(injected)[0]} is supplied by the engine; remove it from the recipe")
    check_protocols(recipe.eval.protocols, registries)
    _check_method_parts(recipe, registries)


def _augmentation_entries(recipe: Recipe) -> list[tuple[str, Component]]:
    if recipe.views is None:
        return [(f"augmentation.{i}", c) for i, c in enumerate(recipe.augmentation)]
    return [(f"views.{g}.augmentation.{i}", c) for g, group in enumerate(recipe.views) for i, c in enumerate(group.augmentation)]


def check_protocols(protocols: list[str] | str, registries: Registries) -> None:
    """Every name of ``eval.protocols`` is ``label_free`` or registered under ``protocols``."""
    known = [*registries.protocols.names(), LABEL_FREE]
    for name in [] if protocols == "auto" else protocols:
        if name not in known:
            raise RecipeError(f"eval.protocols: unknown '{name}'{did_you_mean(name, known)} (choose from "
                              f"{', '.join(known)}; contrastive list protocols)")


def method_parts(factory: Any) -> dict[str, bool]:
    """The built parts (`METHOD_PARTS`) a method's signature names, each with whether it
    is required (no default)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    return {name: params[name].default is inspect.Parameter.empty for name in METHOD_PARTS if name in params}


def _predictor_example(head: Component | None) -> str:
    """A predictor that fits ``head``: it maps projections to projections, so its out_dim is the
    head's (4096 hidden, MoCo v3's and NNCLR's, unless the head states a hidden_dim)."""
    args = head.args if head is not None else {}
    out_dim, hidden_dim = args.get("out_dim", 256), args.get("hidden_dim", 4096)
    return f"{{name: mlp, args: {{hidden_dim: {hidden_dim}, out_dim: {out_dim}}}}}"


def _check_method_parts(recipe: Recipe, registries: Registries) -> None:
    """A predictor the method needs is in the recipe, and one it would ignore is not."""
    name = recipe.method.name
    parts = method_parts(registries.methods.get(name))
    if "backbone" not in parts:
        raise RecipeError(f"method '{name}' takes no backbone argument; a method's __init__ must accept backbone")
    examples = {"head": "{name: mlp, args: {hidden_dim: 2048, out_dim: 128}}", "loss": "{name: ntxent}",
                "predictor": _predictor_example(recipe.head)}
    kinds = {"head": "heads", "loss": "losses", "predictor": "heads"}
    for part, example in examples.items():
        if getattr(recipe, part) is None and parts.get(part):
            raise RecipeError(
                f"method '{name}' needs a {part}; add {part}: {example} to the recipe, or --{part} '{example}' "
                f"on the command line (contrastive list {kinds[part]})"
            )
    if recipe.predictor is not None and "predictor" not in parts:
        raise RecipeError(f"method '{name}' takes no predictor: remove predictor from the recipe (or choose a method that uses one)")
