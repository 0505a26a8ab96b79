"""What the command table holds: one ``contrastive`` subcommand (`Command`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

# Command.overrides: every --key that is not one of the command's own options is a recipe override.
RECIPE = "recipe"


@dataclass(frozen=True)
class Command:
    """One subcommand of ``contrastive``.

    Attributes:
        name: the word after ``contrastive``.
        help: one line; ``contrastive --help``, shell completion and the docs' command table show it.
        usage: the synopsis after ``contrastive NAME`` (the usage lines of ``contrastive --help``).
        description: the paragraph of ``contrastive NAME --help``.
        add_arguments: ``add_arguments(parser)`` adds the command's own options to its jsonargparse
            subparser; after parsing they are ``args.<name>.<dest>``.
        run: ``run(args, overrides) -> exit status``; ``args`` is the whole parsed namespace (the
            global options too: ``args.disable_plugin``), ``overrides`` the recipe overrides split
            off the line (``["--loss.args.temperature", "0.2", ...]``; empty when the command takes
            none).  It imports its heavy modules (torch) itself, so the table imports no torch.
        overrides: which recipe overrides the command takes, split off before jsonargparse parses
            the line (their keys depend on the installed plugins): ``()`` none; `RECIPE`
            every ``--key`` that is not its own option (fit, check, sweep); a tuple of prefixes
            only the keys starting with one (``("--eval.",)``).
        epilog: builds text shown after the options of ``contrastive NAME --help``, its lines kept
            as written (fit: every trainer/eval setting); ``None``: none.
    """

    name: str
    help: str
    usage: str
    description: str
    add_arguments: Callable[[object], None]
    run: Callable[[object, list[str]], int]
    overrides: Literal["recipe"] | tuple[str, ...] = ()
    epilog: Callable[[], str] | None = None


def registries(args):
    """The registries with the installed plugins, less those ``--disable-plugin`` names."""
    import contrastive

    return contrastive.load_registries(disable=args.disable_plugin)
