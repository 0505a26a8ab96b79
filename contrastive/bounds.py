"""Declared ranges of numbers: the one check behind recipe settings and component arguments.

A *bound spec* is a mapping with any of ``min`` / ``max`` (inclusive) and ``gt`` / ``lt``
(exclusive), e.g. ``{"min": 1}`` (a queue size), ``{"gt": 0}`` (a temperature),
``{"min": 0, "lt": 1}`` (a momentum below 1).  Other keys (``help``, ...) are ignored, so a
dataclass field's ``metadata`` is a spec as it stands.  Recipe sections declare theirs on their
fields ([`contrastive.recipe.schema`][contrastive.recipe.schema]); a component declares ``arg_bounds = {argument: spec}``
on its class (or factory function), which [`contrastive.registry.Registry.check_args`][contrastive.registry.Registry.check_args]
checks before building and the component checks itself with [`check_arguments`][contrastive.bounds.check_arguments] when built
directly.

Only real numbers are checked against a spec (``None``, ``"auto"`` and the like are the type
hint's business).  NaN is outside every range.  Standard library only: no torch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from contrastive.errors import InvalidArgumentsError
from contrastive.typecheck import matches, type_hints, type_name

#: The keys of a bound spec; any other key of the mapping is ignored.
BOUND_KEYS = ("min", "max", "gt", "lt")


def describe(spec: Mapping[str, Any]) -> str:
    """The allowed range in words: ``at least 1``, ``>= 0``, ``> 0``, ``in [0, 1)``,
    ``between 1 and 604800``, ``strictly between 0 and 1``; ``""`` for a spec without bounds."""
    low = ("min", spec["min"]) if "min" in spec else ("gt", spec["gt"]) if "gt" in spec else None
    high = ("max", spec["max"]) if "max" in spec else ("lt", spec["lt"]) if "lt" in spec else None
    if low and high:
        if low[0] == "min" and high[0] == "max":
            return f"between {low[1]} and {high[1]}"
        if low[0] == "gt" and high[0] == "lt":
            return f"strictly between {low[1]} and {high[1]}"
        return f"in {'[' if low[0] == 'min' else '('}{low[1]}, {high[1]}{']' if high[0] == 'max' else ')'}"
    if low:
        if low[0] == "gt":
            return f"> {low[1]}"
        return ">= 0" if low[1] == 0 else f"at least {low[1]}"  # ">= 0" reads better than "at least 0"
    if high:
        return f"at most {high[1]}" if high[0] == "max" else f"< {high[1]}"
    return ""


def within(value: Any, spec: Mapping[str, Any] | None) -> bool:
    """Whether ``value`` satisfies ``spec``; a value that is not a real number (``None``, a
    string, a bool) always does, as does any value against a spec without bounds."""
    if not spec or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return True
    if isinstance(value, float) and math.isnan(value):
        return not any(key in spec for key in BOUND_KEYS)
    return (
        ("min" not in spec or value >= spec["min"])
        and ("max" not in spec or value <= spec["max"])
        and ("gt" not in spec or value > spec["gt"])
        and ("lt" not in spec or value < spec["lt"])
    )


def problem(value: Any, spec: Mapping[str, Any] | None) -> str | None:
    """``"must be > 0, got 0.0"`` when ``value`` is outside ``spec``, else None."""
    return None if within(value, spec) else f"must be {describe(spec)}, got {value!r}"


def check_arguments(owner: str, factory: Callable[..., Any], **values: Any) -> None:
    """Check the keyword ``values`` a component was called with against its type hints and its
    ``arg_bounds``; raise [`InvalidArgumentsError`][contrastive.errors.InvalidArgumentsError] with one line,
    ``"<owner>: <argument> must be <range>, got <value>"`` (or ``should be <type>``).

    For a component built directly rather than by the registry (which checks the same before
    building); ``factory`` is the component's class or function."""
    hints = type_hints(factory)
    bounds = getattr(factory, "arg_bounds", None) or {}
    for key, value in values.items():
        if key in hints and not matches(value, hints[key]):
            raise InvalidArgumentsError(f"{owner}: {key} should be {type_name(hints[key])}, got {value!r}")
        found = problem(value, bounds.get(key))
        if found:
            raise InvalidArgumentsError(f"{owner}: {key} {found}")
