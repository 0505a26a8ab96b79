"""What a recipe may not do on its own: run a command.

webdataset's ``pipe:CMD`` URLs run ``CMD`` in a shell and read its output as a shard.  A recipe
file is data that people share and download, so a ``pipe:`` URL in it runs only when the person
starting the run allows it *outside* the recipe: on the command line (``contrastive --allow-pipe
fit ...``, which sets the variable below for the process and its workers) or in the environment
(``CONTRASTIVE_ALLOW_PIPE=1``).  No recipe key can allow it.

This module imports nothing heavy: the command line reads it before torch is imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from contrastive.errors import DataError

#: Set to ``1`` to let ``pipe:`` URLs run their command (``--allow-pipe`` sets it).
ALLOW_PIPE_ENV = "CONTRASTIVE_ALLOW_PIPE"
HOW_TO_ALLOW = f"allow it for this run with `contrastive --allow-pipe fit ...` or {ALLOW_PIPE_ENV}=1 in the environment"


def pipe_allowed() -> bool:
    """Whether the user allowed ``pipe:`` URLs (the environment variable is ``1``, ``true`` or ``yes``)."""
    return os.environ.get(ALLOW_PIPE_ENV, "").strip().lower() in ("1", "true", "yes")


def allow_pipe() -> None:
    """The command line's ``--allow-pipe``: allow ``pipe:`` URLs in this process and its children."""
    os.environ[ALLOW_PIPE_ENV] = "1"


def refuse_pipes(urls: Iterable[str], what: str) -> None:
    """Raise a one-line [`DataError`][contrastive.errors.DataError] when any of ``urls`` is a ``pipe:`` URL and the user
    has not allowed them; ``what`` names the setting the URLs came from."""
    if pipe_allowed():
        return
    for url in urls:
        if url.strip().startswith("pipe:"):
            shown = url if len(url) <= 80 else url[:77] + "..."
            raise DataError(
                f"{what}: '{shown}' is a pipe: URL, which runs a shell command; a recipe cannot allow that on "
                f"its own: {HOW_TO_ALLOW}"
            )
