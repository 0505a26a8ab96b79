"""Splitting a command line into jsonargparse's part and the recipe overrides.

Recipe overrides (``--loss.args.temperature 0.2``) are taken off the line before jsonargparse
sees it: the set of valid keys depends on the installed plugins.  Which overrides a command takes
is its table entry's ``overrides`` (`Command`).
"""

from __future__ import annotations

from collections.abc import Callable

from jsonargparse import ArgumentParser

from contrastive.commands.command import RECIPE, Command


def is_option(token: str) -> bool:
    """Whether ``token`` is a long option (``--name`` or ``--name=value``)."""
    return token.startswith("--") and len(token) > 2


def partition(tokens: list[str], is_taken: Callable[[str], bool],
              takes_value: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """Split ``tokens`` into the options ``is_taken(name)`` selects (each with its value, when
    ``takes_value(name)`` and the value is not given as ``--name=value``) and the rest, in order."""
    taken: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name = token.split("=", 1)[0]
        target = taken if is_taken(name) else rest
        target.append(token)
        if "=" not in token and takes_value(name) and i + 1 < len(tokens) and not is_option(tokens[i + 1]):
            target.append(tokens[i + 1])
            i += 1
        i += 1
    return taken, rest


def own_options(command: Command) -> dict[str, bool]:
    """The command's own option strings (``-h``/``--help`` included) -> whether each takes a value."""
    parser = ArgumentParser(exit_on_error=False)
    command.add_arguments(parser)
    return {option: action.nargs != 0 for action in parser._actions for option in action.option_strings}


def split_overrides(command: Command, tokens: list[str]) -> tuple[list[str], list[str]]:
    """``tokens`` (the line after the command's name) as (its own options, its recipe overrides).

    `RECIPE`: every ``--key`` that is not the command's own
    option is an override, with the value that follows; prefixes: only those keys (values
    follow); ``()``: no overrides.
    """
    if command.overrides == RECIPE:
        own = own_options(command)
        overrides, kept = partition(tokens, lambda name: name not in own, lambda name: own.get(name, is_option(name)))
        return kept, overrides
    if command.overrides:
        prefixes = tuple(command.overrides)
        overrides, kept = partition(tokens, lambda name: name.startswith(prefixes), lambda name: True)
        return kept, overrides
    return tokens, []
