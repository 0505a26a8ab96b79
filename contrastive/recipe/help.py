"""The recipe's settings as ``contrastive fit --help`` lists them ([`settings_help`][contrastive.recipe.help.settings_help])."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import yaml

from contrastive import bounds
from contrastive.recipe.schema import TOP_LEVEL_KEYS, TOP_LEVEL_SETTINGS, EvalConfig, TrainerConfig
from contrastive.schedules import KINDS
from contrastive.typecheck import type_name


def settings_help() -> str:
    """The recipe's top-level keys, its top-level settings (``seed``, ``report``) and every
    ``trainer.*`` / ``eval.*`` setting, one line each: type, allowed range, default and what it
    does (the ``help`` of the field's metadata), for ``contrastive fit --help``."""
    lines = ["recipe keys (any of them: --KEY.SUB VALUE; contrastive list KIND for the names):",
             "  " + ", ".join(TOP_LEVEL_KEYS), "", "top-level settings:"]
    for name, (kind, default, what) in TOP_LEVEL_SETTINGS.items():
        lines.append(f"  --{name:32s} {type_name(kind)} (default: {_shown(default)}): {what}")
    lines.append("")
    for section, cls in (("trainer", TrainerConfig), ("eval", EvalConfig)):
        lines.append(f"{section} settings:")
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            allowed = f" [{bounds.describe(f.metadata)}]" if bounds.describe(f.metadata) else ""
            kind = f"{type_name(hints[f.name])} (default: {_shown(default)}){allowed}"
            lines.append(f"  --{section}.{f.name:24s} {kind}: {f.metadata['help']}")
        lines.append("")
    lines += ["values that change over training (docs/recipes.md, docs/temperature.md):",
              f"  any numeric argument of method.args or loss.args, and optimizer.args.weight_decay, may be a schedule "
              f"({', '.join(KINDS)}):",
              "    --loss.args.temperature '{schedule: cosine, start: 0.5, end: 0.1}'",
              "  ntxent's temperature (so SimCLR's and SupCon's) may be learned: --loss.args.temperature learned",
              "  contrastive list losses --describe ntxent shows what each component allows"]
    return "\n".join(lines).rstrip()


def _shown(default: Any) -> str:
    """A default as a recipe writes it: ``null``, ``[TERM, INT, USR1]``, ``auto``."""
    if default is None:
        return "null"
    return yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
