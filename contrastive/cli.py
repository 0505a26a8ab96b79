"""The ``contrastive`` command line: global options, parsing, dispatch and error handling.

The subcommands (fit, check, list, ...) are the command table,
`contrastive.commands.COMMANDS`: each names its arguments, its ``run`` and the recipe
overrides it takes (``--loss.args.temperature 0.2``; split off before jsonargparse sees the
line because the set of valid keys depends on the installed plugins).  ``contrastive --help``
shows each command's usage line.  Every user error exits with status 2 and a one-line cause;
``--debug`` shows the traceback.  Importing this module (and ``contrastive --help``) imports no
torch.  Output to a closed pipe (``contrastive list | head -1``) ends quietly with status 141,
as a tool killed by SIGPIPE reports.

Global options also come from the environment: ``CONTRASTIVE_DEBUG=1`` (``--debug``) and
``CONTRASTIVE_DISABLE_PLUGINS=a,b`` (``--disable-plugin a --disable-plugin b``).
``contrastive --print_completion shtab-bash`` (zsh, tcsh, ...; needs shtab) prints a completion
script for the subcommands and their options (recipe overrides are not completed: their keys
depend on the installed plugins).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from jsonargparse import ArgumentError, ArgumentParser, DefaultHelpFormatter

from contrastive._version import __version__
from contrastive.commands import COMMANDS
from contrastive.commands.overrides import partition, split_overrides
from contrastive.errors import EXIT_USER_ERROR, ContrastiveError, Preempted
from contrastive.plugins import DISABLE_ENV

# jsonargparse reserves --print_config for its own config files: we take it off the line first.
PRINT_CONFIG = "--print_config"
# As a shell reports a command killed by SIGPIPE (128 + 13): output to a closed pipe.
EXIT_CLOSED_PIPE = 141
# Global options, accepted anywhere on the line and moved before the subcommand.
_GLOBAL_OPTIONS = {"--debug": False, "--disable-plugin": True, "--version": False, "--allow-pipe": False}
# The global options' environment variables.  A fixed mapping, not jsonargparse's default_env:
# that would also give every subcommand option a variable (and CONTRASTIVE_COMMAND the
# subcommand), take only true/false for flags and a YAML list for --disable-plugin.
DEBUG_ENV = "CONTRASTIVE_DEBUG"  # 1 / true / yes / on: as --debug
# --disable-plugin: DISABLE_ENV (CONTRASTIVE_DISABLE_PLUGINS=a,b), read by load_registries itself
# jsonargparse's --print_completion (shell completion scripts; the shells need shtab).
PRINT_COMPLETION = "--print_completion"


class _KeepLayout(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's help, with the epilog's lines kept as written."""


def _enable_completion() -> None:
    """jsonargparse's ``--print_completion`` (a process-wide setting of jsonargparse, tested with
    4.53; releases without it give no completion option and the command works the same)."""
    try:
        from jsonargparse import set_parsing_settings

        set_parsing_settings(add_print_completion_argument=True)
    except (ImportError, TypeError):
        pass


def _usage_lines() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  contrastive {name:{width}s} {command.usage}".rstrip() for name, command in COMMANDS.items()]
    return "usage of the commands (contrastive COMMAND --help for their options):\n" + "\n".join(lines)


def _parser() -> ArgumentParser:
    _enable_completion()
    parser = ArgumentParser(
        prog="contrastive",
        description="Contrastive self-supervised learning (SimCLR, SupCon, multi-crop, plugin methods) from YAML "
        "recipes. Recipe overrides: any key with dots, e.g. --trainer.max_epochs 1 --method.name supcon.",
        epilog=_usage_lines(),
        exit_on_error=False,  # usage errors: one line from main(), like every other error
        formatter_class=_KeepLayout,
    )
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks of errors (or {DEBUG_ENV}=1)")
    parser.add_argument("--version", action="version", version=f"contrastive {__version__} (distribution contrastive-ssl)")
    parser.add_argument(
        "--disable-plugin", dest="disable_plugin", action="append", default=[], metavar="NAME",
        help=f"skip an installed plugin (entry-point or distribution name); repeatable (or {DISABLE_ENV}=a,b)",
    )
    parser.add_argument("--allow-pipe", dest="allow_pipe", action="store_true",
                        help="let webdataset pipe: URLs run their shell command (a recipe cannot allow it)")
    subcommands = parser.add_subcommands(dest="command")
    for name, command in COMMANDS.items():
        # an epilog keeps its lines as written (fit's lists the settings line by line)
        layout = {"epilog": command.epilog(), "formatter_class": _KeepLayout} if command.epilog else {}
        subparser = ArgumentParser(exit_on_error=False, description=command.description, **layout)
        command.add_arguments(subparser)
        subcommands.add_subcommand(name, subparser, help=command.help)
    return parser


def _split_line(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` with the global options (``--debug``, ``--disable-plugin X``) moved in front of the
    subcommand, and the recipe overrides its command takes split off: (line, overrides)."""
    hoisted, rest = partition(argv, lambda name: name in _GLOBAL_OPTIONS, lambda name: _GLOBAL_OPTIONS.get(name, False))
    for position, token in enumerate(rest):
        if token in COMMANDS:
            kept, overrides = split_overrides(COMMANDS[token], rest[position + 1 :])
            return hoisted + rest[: position + 1] + kept, overrides
    return hoisted + rest, []


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to 1, true, yes or on (any case)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _check_completion_request(argv: list[str]) -> None:
    """``--print_completion shtab-SHELL`` needs shtab; without it jsonargparse offers only jsonschema."""
    import importlib.util

    asked = any(token.split("=", 1)[0] == PRINT_COMPLETION for token in argv)
    if asked and importlib.util.find_spec("shtab") is None:
        raise ContrastiveError("shell completion scripts need shtab: pip install shtab "
                               "(then: contrastive --print_completion shtab-bash > ~/.local/share/bash-completion/completions/contrastive)")


def _one_line_warnings(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def _silence_stdout() -> None:
    """Point stdout at /dev/null: the interpreter's flush at exit would hit the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor (a captured stdout)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.formatwarning = _one_line_warnings
    debug = "--debug" in argv or env_flag(DEBUG_ENV)
    try:
        _check_completion_request(argv)
        if PRINT_CONFIG in argv:
            argv = [("--print-config" if a == PRINT_CONFIG else a) for a in argv]
        argv, overrides = _split_line(argv)
        parser = _parser()
        try:
            args = parser.parse_args(argv)
        except ArgumentError as exc:
            command = next((a for a in argv if a in COMMANDS), "")
            message = " ".join(str(exc).split())
            print(f"error: {message} (contrastive {command + ' ' if command else ''}--help lists the options)", file=sys.stderr)
            return EXIT_USER_ERROR
        if args.command is None:
            parser.print_help()
            return EXIT_USER_ERROR
        if args.allow_pipe:
            from contrastive.recipe.trust import allow_pipe

            allow_pipe()
        status = COMMANDS[args.command].run(args, overrides)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then the BrokenPipeError below
        return status
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_CLOSED_PIPE
    except ContrastiveError as exc:
        if debug:
            raise
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        more = " (--debug for details)" if len(lines) > 1 else ""
        print(f"error: {lines[0]}{more}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Preempted as exc:  # a signal stopped fit after saving: 128 + the signal's number
        print(f"{exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
