"""Checking a raw recipe mapping and turning it into a [`Recipe`][contrastive.recipe.schema.Recipe]
([`validate`][contrastive.recipe.validation.validate]): the top-level keys, each ``{name, args}`` component, the view groups, the
``trainer:`` / ``eval:`` sections against their dataclasses (unknown keys, types), and the
schedules and learned values in component arguments ([`contrastive.recipe.scheduled`][contrastive.recipe.scheduled])."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import TYPE_CHECKING, Any

from contrastive import bounds
from contrastive.errors import RecipeError, did_you_mean
from contrastive.recipe.checks import check_components
from contrastive.recipe.scheduled import learned_args, scheduled_args
from contrastive.recipe.schema import (
    COMPONENT_KINDS,
    DEFAULT_METHOD,
    EVAL_BASELINES,
    EVAL_PROTOCOLS,
    IGNORED_KEYS,
    OPTIONAL_COMPONENTS,
    TOP_LEVEL_KEYS,
    TRACKERS,
    Component,
    EvalConfig,
    Recipe,
    TrainerConfig,
    ViewGroup,
)
from contrastive.recipe.signals import parse_signals
from contrastive.typecheck import matches, type_name

if TYPE_CHECKING:
    from contrastive.registry import Registries


def validate(raw: dict[str, Any], registries: Registries | None=None) -> Recipe:
    """Check the structure of ``raw``, and with ``registries`` every name and argument; the keys of
    `IGNORED_KEYS` (a run's ``plan``) are skipped.  ``raw`` is
    left as it is."""
    for key in raw:
        if key not in TOP_LEVEL_KEYS and key not in IGNORED_KEYS:
            raise RecipeError(f"unknown recipe key '{key}'{did_you_mean(key, TOP_LEVEL_KEYS)} (recipe keys: {', '.join(TOP_LEVEL_KEYS)})")
    if raw.get("augmentation") is not None and raw.get("views") is not None:
        raise RecipeError(
            "the recipe has both 'augmentation' and 'views': give one view pipeline as augmentation, or view "
            "groups as views: [{count: N, augmentation: [...]}, ...] (multi-crop)"
        )
    missing = [k for k in COMPONENT_KINDS if k not in OPTIONAL_COMPONENTS and raw.get(k) is None]
    if raw.get("augmentation") is None and raw.get("views") is None:
        missing.append("augmentation")
    if missing:
        raise RecipeError(f"recipe is missing {', '.join(sorted(set(missing)))} (see recipes/quickstart.yaml for a complete recipe)")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise RecipeError(f"seed should be an integer, got {seed!r}")
    report = raw.get("report", True)
    if not isinstance(report, bool):
        raise RecipeError(f"report should be true or false (write RUN_DIR/report.html at the end of fit), got {report!r}")
    components = {key: _component(raw[key], key) if raw.get(key) is not None else None for key in COMPONENT_KINDS}
    augmentation = _augmentation(raw["augmentation"], "augmentation") if raw.get("augmentation") is not None else None
    views = _views(raw["views"]) if raw.get("views") is not None else None
    method_raw = raw.get("method")
    if isinstance(method_raw, dict) and "name" not in method_raw:  # --method.args.x alone: args of the default
        method_raw = {"name": DEFAULT_METHOD, **method_raw}
    method = _component(method_raw, "method") if method_raw is not None else Component(DEFAULT_METHOD)
    predictor = _component(raw["predictor"], "predictor") if raw.get("predictor") is not None else None
    eval_config = _eval_config(raw.get("eval"))
    callbacks = _callbacks(raw.get("callbacks"))
    recipe = Recipe(seed=seed, augmentation=augmentation, trainer=_trainer(raw.get("trainer")), eval=eval_config,
                    method=method, views=views, predictor=predictor, report=report, callbacks=callbacks, **components)
    scheduled_args(recipe)  # every schedule and learned value parses, and stands where it may
    learned_args(recipe)
    if registries is not None:
        check_components(recipe, registries)
    return recipe


def _section(raw: Any, cls: type, where: str, components: tuple[str, ...] = ()) -> dict[str, Any]:
    """A settings section (``trainer:``, ``eval:``) checked against the dataclass ``cls``: unknown
    keys get a suggestion, ints become floats where the field is a float, values match the
    field's type hint and lie within the bounds of its metadata (one loop for every setting;
    see [`contrastive.recipe.schema.setting`][contrastive.recipe.schema.setting]); the keys in ``components`` hold
    ``{name, args}`` components."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"'{where}' must be a mapping, got {raw!r}")
    raw = dict(raw)
    fields = [f.name for f in dataclasses.fields(cls)]
    metadata = {f.name: f.metadata for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, value in raw.items():
        if key not in fields:
            raise RecipeError(f"unknown {where} key '{key}'{did_you_mean(key, fields)} ({where} keys: {', '.join(fields)})")
        if key in components:
            raw[key] = None if value is None else _component(value, f"{where}.{key}")
            continue
        if isinstance(value, int) and not isinstance(value, bool) and matches(0.5, hints[key]):  # a float field
            raw[key] = value = float(value)
        if not matches(value, hints[key]):
            raise RecipeError(f"{where}.{key} should be {type_name(hints[key])}, got {value!r}")
        if not bounds.within(value, metadata[key]):
            others = "".join(f" or {other}" for other in _besides_numbers(hints[key]))
            what = f" is {metadata[key]['what']} and" if "what" in metadata[key] else ""
            raise RecipeError(f"{where}.{key}{what} must be {bounds.describe(metadata[key])}{others}, got {value!r}")
    return raw


def _besides_numbers(hint: Any) -> list[str]:
    """The values a numeric setting's hint also allows, in a recipe's words: ``null``, ``auto``."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    literals = [str(v) for a in args if typing.get_origin(a) is typing.Literal for v in typing.get_args(a)]
    return literals + (["null"] if type(None) in args else [])


def _eval_config(raw: Any) -> EvalConfig:
    raw = _section(raw, EvalConfig, "eval", components=("train_data", "test_data"))
    for item in [] if raw.get("protocols") == "auto" else raw.get("protocols", []):
        if not isinstance(item, str) or not item:
            raise RecipeError(f"eval.protocols: {item!r} is not a protocol name (the built-in ones: {', '.join(EVAL_PROTOCOLS)})")
    for key, allowed in (("baselines", EVAL_BASELINES),):
        for item in raw.get(key, []):
            if item not in allowed:
                raise RecipeError(f"eval.{key}: unknown '{item}'{did_you_mean(str(item), allowed)} (choose from {', '.join(allowed)})")
    return EvalConfig(**raw)


def _trainer(raw: Any) -> TrainerConfig:
    config = TrainerConfig(**_section(raw, TrainerConfig, "trainer"))
    parse_signals(config.preempt_signals)
    for name in [config.log_with] if isinstance(config.log_with, str) else config.log_with or []:
        if name not in TRACKERS:
            raise RecipeError(f"trainer.log_with: unknown tracker '{name}'{did_you_mean(name, TRACKERS)} (choose from {', '.join(TRACKERS)})")
    return config


def _component(raw: Any, where: str) -> Component:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise RecipeError(f"'{where}' must be {{name: ..., args: {{...}}}}, got {raw!r}")
    unknown = set(raw) - {"name", "args"}
    if unknown:
        key = sorted(unknown)[0]
        raise RecipeError(f"'{where}' has unknown key '{key}'{did_you_mean(key, ['name', 'args'])}; a component is {{name: ..., args: {{...}}}}")
    if not isinstance(raw.get("name"), str) or not raw["name"]:
        raise RecipeError(f"'{where}.name' is missing: give the registry name of the component")
    args = raw.get("args") or {}
    if not isinstance(args, dict):
        raise RecipeError(f"'{where}.args' must be a mapping of argument names to values, got {args!r}")
    return Component(raw["name"], dict(args))


def _augmentation(raw: Any, where: str) -> list[Component]:
    if not isinstance(raw, list) or not raw:
        raise RecipeError(f"'{where}' must be a non-empty list of {{name: ..., args: {{...}}}} entries (applied in order)")
    return [_component(a, f"{where}.{i}") for i, a in enumerate(raw)]


def _callbacks(raw: Any) -> list[Component]:
    """``callbacks: [{name, args}, ...]`` (absent or null: none)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RecipeError(f"'callbacks' must be a list of {{name: ..., args: {{...}}}} entries (run in order), got {raw!r}")
    return [_component(c, f"callbacks.{i}") for i, c in enumerate(raw)]


def _views(raw: Any) -> list[ViewGroup]:
    shape = "views: [{count: 2, augmentation: [...]}, {count: 6, augmentation: [...]}]"
    if not isinstance(raw, list) or not raw:
        raise RecipeError(f"'views' must be a non-empty list of view groups, e.g. {shape}")
    groups = []
    for i, group in enumerate(raw):
        where = f"views.{i}"
        if not isinstance(group, dict):
            raise RecipeError(f"'{where}' must be a mapping {{count: N, augmentation: [...]}}, got {group!r}")
        unknown = sorted(set(group) - {"count", "augmentation"})
        if unknown:
            raise RecipeError(
                f"'{where}' has unknown key '{unknown[0]}'{did_you_mean(unknown[0], ['count', 'augmentation'])}; "
                f"a view group is {{count: N, augmentation: [...]}}"
            )
        count = group.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise RecipeError(f"'{where}.count' must be a positive int (views drawn per image), got {count!r}")
        if group.get("augmentation") is None:
            raise RecipeError(f"'{where}' is missing augmentation: the list of steps its views are drawn with")
        groups.append(ViewGroup(count, _augmentation(group["augmentation"], f"{where}.augmentation")))
    return groups
