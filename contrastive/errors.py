"""User-facing errors.

Every exception defined here describes a problem with the user's input or environment (a
misspelt name, a bad argument, a missing file, a broken plugin).  The command line prints the
message alone — no traceback unless ``--debug`` — and exits with status 2.  Anything else that
escapes is a bug in contrastive or a plugin and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_USER_ERROR = 2


class ContrastiveError(Exception):
    """Base class of errors caused by input or environment; the CLI exits 2 on these."""


class UnknownNameError(ContrastiveError, LookupError):
    """A registry lookup for a name nobody registered."""


class DuplicateNameError(ContrastiveError):
    """A different object registered under a name that is already taken."""


class InvalidArgumentsError(ContrastiveError, TypeError, ValueError):
    """Arguments that do not fit a component's signature, types or allowed values."""


class PluginError(ContrastiveError):
    """A plugin failed to import or to register its parts."""


class RecipeError(ContrastiveError):
    """A recipe that cannot be loaded or does not validate."""


class DataError(ContrastiveError):
    """A dataset that cannot be found or read."""


class TrainingError(ContrastiveError):
    """Training cannot go on (a non-finite loss, an unusable checkpoint)."""


class EvaluationError(ContrastiveError):
    """A run directory or evaluation data that cannot be used (the CLI exits 2)."""


class ExportError(ContrastiveError):
    """An export that cannot be uploaded: huggingface_hub missing, no token, the Hub refused it."""


class Preempted(Exception):
    """A run stopped by a signal (SIGTERM, SIGINT, SIGUSR1...) after saving what it could.

    Not a [`ContrastiveError`][contrastive.errors.ContrastiveError]: the command line prints the message and exits with
    ``128 + signal number`` (143 for SIGTERM, 130 for SIGINT, 138 for SIGUSR1), the status
    schedulers and shells expect of a process ended by that signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> str:
    """Return ``" — did you mean 'x'?"`` (or ``'x' or 'y'``) or ``""`` when nothing is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)
    if not matches:
        return ""
    quoted = [f"'{m}'" for m in matches]
    if len(quoted) == 1:
        return f" — did you mean {quoted[0]}?"
    return f" — did you mean {', '.join(quoted[:-1])} or {quoted[-1]}?"
