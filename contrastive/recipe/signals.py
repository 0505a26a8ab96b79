"""Names of the signals ``trainer.preempt_signals`` takes (standard library only: recipes
validate them without importing torch)."""

from __future__ import annotations

import signal
from collections.abc import Sequence

from contrastive.errors import RecipeError

DEFAULT_SIGNALS = ("TERM", "INT", "USR1")
CATCHABLE = ("TERM", "INT", "USR1", "USR2", "HUP", "QUIT")


def parse_signals(names: Sequence[str]) -> list[signal.Signals]:
    """``["TERM", "SIGUSR1", ...]`` -> signals; an unknown or uncatchable name is a RecipeError."""
    found = []
    for name in names:
        key = str(name).upper()
        key = key if key.startswith("SIG") else f"SIG{key}"
        if key[3:] not in CATCHABLE:
            raise RecipeError(f"trainer.preempt_signals: cannot use '{name}'; choose from {', '.join(CATCHABLE)}")
        found.append(signal.Signals(getattr(signal, key)))
    return found
