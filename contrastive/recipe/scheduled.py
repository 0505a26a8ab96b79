"""Schedules and learned values in a recipe ([`contrastive.schedules`][contrastive.schedules]): where they
may be written, the arguments the parts are built with, and their checks against the registries.

* A schedule may be the value of any numeric argument of ``method.args`` and ``loss.args``, and of
  ``optimizer.args.weight_decay``; anywhere else it is a [`RecipeError`][contrastive.errors.RecipeError].
* ``learned`` may be the value of an argument its component declares in ``learnable_args``.
* The parts are built with a schedule's value at step 0 ([`initial_args`][contrastive.recipe.scheduled.initial_args]), so
  their own argument checks run unchanged; the registries' checks (types, declared ranges) also
  run on the smallest and the largest value each schedule reaches
  ([`check_variants`][contrastive.recipe.scheduled.check_variants]).

Standard library only (no torch), like the rest of the recipe package.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contrastive.errors import RecipeError
from contrastive.recipe.schema import Component, Recipe
from contrastive.schedules import (
    EXAMPLES,
    LEARNED_EXAMPLE,
    Learned,
    Schedule,
    is_learned,
    is_schedule,
    parse_learned,
    parse_schedule,
)
from contrastive.typecheck import matches, type_hints, type_name

if TYPE_CHECKING:
    from contrastive.registry import Registries

#: Components whose every numeric argument may be a schedule or (where declared) learned.
SCHEDULED_COMPONENTS = ("method", "loss")
#: The optimizer's arguments that may be a schedule.
SCHEDULED_OPTIMIZER_ARGS = ("weight_decay",)
ALLOWED = "method.args, loss.args and optimizer.args.weight_decay"
_OTHER_COMPONENTS = ("data", "backbone", "head", "predictor", "scheduler")
_KINDS = {"method": "methods", "loss": "losses", "optimizer": "optimizers"}


@dataclass(frozen=True)
class ScheduledArg:
    """A recipe argument that follows a schedule: ``loss.args.temperature``, logged as ``schedule/loss.temperature``."""

    component: str  # "method", "loss" or "optimizer"
    arg: str
    schedule: Schedule

    @property
    def where(self) -> str:
        return f"{self.component}.args.{self.arg}"

    @property
    def metric(self) -> str:
        """Its key in metrics.jsonl and the tracker."""
        return f"schedule/{self.component}.{self.arg}"


@dataclass(frozen=True)
class LearnedArg:
    """A recipe argument whose value is learned: ``loss.args.temperature: learned``, logged as ``learned/loss.temperature``."""

    component: str
    arg: str
    spec: Learned

    @property
    def where(self) -> str:
        return f"{self.component}.args.{self.arg}"

    @property
    def metric(self) -> str:
        return f"learned/{self.component}.{self.arg}"


def _components(recipe: Recipe) -> Iterator[tuple[str, Component]]:
    for key in (*SCHEDULED_COMPONENTS, "optimizer", *_OTHER_COMPONENTS):
        component = getattr(recipe, key, None)
        if component is not None:
            yield key, component


def scheduled_args(recipe: Recipe) -> list[ScheduledArg]:
    """Every schedule of the recipe, parsed; a schedule where none may be, or a bad one, is a
    one-line [`RecipeError`][contrastive.errors.RecipeError] naming its key."""
    found = []
    for key, component in _components(recipe):
        for arg, value in component.args.items():
            if not is_schedule(value):
                continue
            where = f"{key}.args.{arg}"
            if key == "optimizer" and arg not in SCHEDULED_OPTIMIZER_ARGS:
                other = " (the learning rate follows scheduler:)" if arg == "lr" else ""
                raise RecipeError(f"{where} cannot follow a schedule{other}: schedules are read in {ALLOWED}")
            if key not in SCHEDULED_COMPONENTS and key != "optimizer":
                raise RecipeError(f"{where} cannot follow a schedule: schedules are read in {ALLOWED}")
            found.append(ScheduledArg(key, arg, parse_schedule(value, where)))
    return found


def learned_args(recipe: Recipe) -> list[LearnedArg]:
    """Every learned value of the recipe (in ``method.args`` and ``loss.args``), parsed; ``learned``
    elsewhere is a [`RecipeError`][contrastive.errors.RecipeError]."""
    found = []
    for key, component in _components(recipe):
        for arg, value in component.args.items():
            if not is_learned(value) or is_schedule(value):
                continue
            where = f"{key}.args.{arg}"
            if key not in SCHEDULED_COMPONENTS:
                raise RecipeError(f"{where} cannot be learned: learned values are read in method.args and loss.args "
                                  f"(where the component declares them, e.g. loss.args.temperature of ntxent)")
            found.append(LearnedArg(key, arg, parse_learned(value, where)))
    return found


def initial_args(args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with every schedule replaced by its value at step 0: what a part is built with
    (a learned value stays as written: the component reads it)."""
    return {arg: parse_schedule(value, arg).first if is_schedule(value) else value for arg, value in args.items()}


def optimizer_args(args: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's ``args`` to build it with: a scheduled ``weight_decay`` becomes the
    schedule's largest value, so that every group that decays is built with a non-zero decay and
    is found again (the loop then sets the value of each step on those groups)."""
    return {arg: parse_schedule(value, arg).extremes[1] if is_schedule(value) else value for arg, value in args.items()}


def check_variants(key: str, component: Component) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(context, args)`` to check ``component``'s arguments with (the registries' ``check_args``):
    first the values at step 0 (``context`` empty), then, per schedule, its smallest and largest
    value with the others at step 0 (``context`` saying which); learned values as their ``init``."""
    first = {}
    for arg, value in component.args.items():
        if is_schedule(value):
            first[arg] = parse_schedule(value, f"{key}.args.{arg}").first
        elif is_learned(value) and key in SCHEDULED_COMPONENTS:
            first[arg] = parse_learned(value, f"{key}.args.{arg}").init
        else:
            first[arg] = value
    yield "", first
    for arg, value in component.args.items():
        if not is_schedule(value):
            continue
        schedule = parse_schedule(value, f"{key}.args.{arg}")
        for reached in schedule.extremes:
            if reached != schedule.first:
                yield f"{key}.args.{arg} ({schedule.describe()}) reaches {reached:g}", {**first, arg: reached}


def check_against_factories(recipe: Recipe, registries: Registries) -> None:
    """Each scheduled argument takes a float in its factory's signature; each learned one is in
    its factory's ``learnable_args``; a weight-decay schedule stays >= 0.  Components of unknown
    names are skipped (the name check says what is wrong with them)."""
    for item in scheduled_args(recipe):
        component = getattr(recipe, item.component)
        if component.name not in registries[_KINDS[item.component]]:
            continue
        factory = registries[_KINDS[item.component]].get(component.name)
        hint = type_hints(factory).get(item.arg)
        if hint is not None and not matches(0.5, hint):
            raise RecipeError(f"{item.where} cannot follow a schedule: {item.component} '{component.name}' takes "
                              f"{type_name(hint)} there, and a schedule gives a float at every step")
        if item.component == "optimizer" and item.schedule.extremes[0] < 0:
            raise RecipeError(f"{item.where} ({item.schedule.describe()}) must stay >= 0, reaches {item.schedule.extremes[0]:g}")
    for item in learned_args(recipe):
        component = getattr(recipe, item.component)
        if component.name not in registries[_KINDS[item.component]]:
            continue
        factory = registries[_KINDS[item.component]].get(component.name)
        learnable = tuple(getattr(factory, "learnable_args", ()))
        if item.arg not in learnable:
            can = f"; it can learn {', '.join(learnable)}" if learnable else ""
            raise RecipeError(f"{item.where}: {item.component} '{component.name}' cannot learn {item.arg}{can} "
                              f"(give a number, or a schedule such as {EXAMPLES['cosine']})")
    for key in SCHEDULED_COMPONENTS:
        component = getattr(recipe, key, None)
        if component is None or component.name not in registries[_KINDS[key]]:
            continue
        factory = registries[_KINDS[key]].get(component.name)
        for arg in getattr(factory, "learnable_args", ()):
            value = component.args.get(arg)
            if isinstance(value, dict) and not is_schedule(value) and not is_learned(value):
                raise RecipeError(f"{key}.args.{arg} should be a number, a schedule ({EXAMPLES['cosine']}), learned "
                                  f"or {LEARNED_EXAMPLE}; got {value!r}")


def _takes_float(hint: Any) -> bool:
    """``float`` itself or a union naming it (a hint this module cannot read does not count)."""
    return hint is float or float in typing.get_args(hint)


def describe_values(kind: str, factory: Any) -> list[str]:
    """Lines for ``contrastive list KIND --describe NAME``: which arguments may be a schedule or learned."""
    hints = type_hints(factory)
    if kind == "optimizers":
        schedulable = [arg for arg in SCHEDULED_OPTIMIZER_ARGS if arg in hints]
    elif kind in ("methods", "losses"):
        schedulable = [arg for arg, hint in hints.items() if arg != "return" and _takes_float(hint)]
    else:
        return []
    lines = []
    if schedulable:
        lines.append(f"  may follow a schedule: {', '.join(schedulable)} (e.g. {EXAMPLES['cosine']}; "
                     f"kinds: {', '.join(EXAMPLES)}; docs/recipes.md)")
    learnable = list(getattr(factory, "learnable_args", ()))
    if learnable:
        lines.append(f"  may be learned: {', '.join(learnable)} (learned, or {LEARNED_EXAMPLE}; docs/temperature.md)")
    return lines
