"""Recipe values against simple type hints: the checks behind ``Registry.check_args`` and recipe validation.

`type_hints` reads a factory's hints, `matches` tells whether a value (as YAML or a
dotted override gives it) fits one, and `type_name` words a hint for an error message.
Hints these helpers do not understand accept anything.

This module imports no torch: ``contrastive check`` and ``contrastive list`` stay light.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any


def type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """The resolved type hints of ``factory``'s parameters (of ``__init__`` for a class), by name;
    ``{}`` when they cannot be resolved (unresolvable forward references)."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable forward references: skip type checks, keep name checks
        return {}


def matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the type hint; unknown or complex hints accept anything."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(matches(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    sequence_origins = (list, tuple, collections.abc.Sequence)
    if hint in sequence_origins or origin in sequence_origins:
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args, strict=True))
        return not args or all(matches(v, args[0]) for v in value)
    if hint is dict or origin in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    return True


def type_name(hint: Any) -> str:
    """The type hint in a recipe's words, for error messages: ``int or null``, ``float, 'learned' or dict``,
    ``one of 'a', 'b'``, ``a list of 2 int``; otherwise the hint's ``__name__``."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        names = [type_name(a) for a in typing.get_args(hint)]
        return ", ".join(names[:-1]) + " or " + names[-1]
    if origin is typing.Literal:
        values = typing.get_args(hint)
        return repr(values[0]) if len(values) == 1 else "one of " + ", ".join(repr(a) for a in values)
    if hint is type(None):
        return "null"
    if origin in (tuple, list, collections.abc.Sequence):
        args = typing.get_args(hint)
        inner = type_name(args[0]) if args else "value"
        count = f"{len(args)} " if origin is tuple and args and args[-1] is not Ellipsis else ""
        return f"a list of {count}{inner}"
    return getattr(hint, "__name__", str(hint))
