"""The command table: every ``contrastive`` subcommand, one module each, in display order.

`COMMANDS` maps a command's name to its `Command`
(name, one-line help, usage, arguments, ``run``, which recipe overrides it takes).  The
command line's parser, the dispatch in `contrastive.cli.main`, the usage lines of
``contrastive --help``, shell completion and the command table in docs/getting-started.md
(checked by a test) all come from it.  Importing it imports no torch.
"""

from __future__ import annotations

from contrastive.commands import check, embed, evaluate, export, fit, listing, plugins, report, shard, sweep
from contrastive.commands.command import RECIPE, Command

COMMANDS: dict[str, Command] = {
    module.COMMAND.name: module.COMMAND
    for module in (fit, check, listing, plugins, evaluate, embed, export, sweep, shard, report)
}

__all__ = ["COMMANDS", "RECIPE", "Command"]
