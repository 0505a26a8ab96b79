"""The ``contrastive`` command line (jsonargparse subcommands).

    contrastive fit   [--recipe R] [--print_config] [overrides ...]
    contrastive check [--recipe R] [overrides ...]
    contrastive list  [KIND] [PATTERN] [--describe NAME]
    contrastive plugins

Recipe overrides address any recipe key with dots (``--loss.args.temperature 0.2``); they are
split off before jsonargparse sees the command line because the set of valid keys depends on
the installed plugins.  Every user error exits with status 2 and a one-line cause; ``--debug``
shows the traceback.  Importing this module (and ``contrastive --help``) imports no torch.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence

from jsonargparse import ArgumentParser

from contrastive.errors import EXIT_USER_ERROR, ContrastiveError

# Options of fit/check that are not recipe overrides (name -> takes a value).
_OWN_OPTIONS = {"--recipe": True, "--print-config": False, "-h": False, "--help": False}
# jsonargparse reserves --print_config for its own config files: we take it off the line first.
PRINT_CONFIG = "--print_config"
# Global options, accepted anywhere on the line and moved before the subcommand.
_GLOBAL_OPTIONS = {"--debug": False, "--disable-plugin": True}


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="contrastive",
        description="Contrastive self-supervised learning (SimCLR) from YAML recipes. "
        "Recipe overrides: any key with dots, e.g. --trainer.max_epochs 1 --backbone.name resnet10t.",
        exit_on_error=True,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument(
        "--disable-plugin", dest="disable_plugin", action="append", default=[], metavar="NAME",
        help="skip an installed plugin (entry-point or distribution name); repeatable",
    )
    commands = parser.add_subcommands(dest="command")

    fit = ArgumentParser(description="Train from a recipe; any recipe key can be overridden (--trainer.max_epochs 1).")
    fit.add_argument("--recipe", default=None, help="recipe YAML path or built-in name (default: quickstart)")
    fit.add_argument("--print-config", dest="print_config", action="store_true",
                     help="print the resolved recipe and exit (also spelt --print_config)")
    commands.add_subcommand("fit", fit, help="train SimCLR from a recipe")

    check = ArgumentParser(description="Validate a recipe's names and arguments without training.")
    check.add_argument("--recipe", default=None, help="recipe YAML path or built-in name (default: quickstart)")
    commands.add_subcommand("check", check, help="validate a recipe without building anything heavy")

    lister = ArgumentParser(description="List registered components.")
    lister.add_argument("kind", nargs="?", default=None, help="augmentations, backbones, heads, losses, datasets, optimizers or schedulers")
    lister.add_argument("pattern", nargs="?", default="*", help="shell wildcard, e.g. 'resnet*'")
    lister.add_argument("--describe", default=None, metavar="NAME", help="show a component's arguments and summary")
    commands.add_subcommand("list", lister, help="list registered components")

    plugins = ArgumentParser(description="List the loaded plugins, their distributions and what they registered.")
    commands.add_subcommand("plugins", plugins, help="list loaded plugins")
    return parser


def _hoist_globals(argv: list[str]) -> list[str]:
    """Move global options (``--debug``, ``--disable-plugin X``) in front of the subcommand."""
    hoisted, rest = [], []
    i = 0
    while i < len(argv):
        name = argv[i].split("=", 1)[0]
        if name in _GLOBAL_OPTIONS:
            hoisted.append(argv[i])
            if _GLOBAL_OPTIONS[name] and "=" not in argv[i] and i + 1 < len(argv):
                hoisted.append(argv[i + 1])
                i += 1
        else:
            rest.append(argv[i])
        i += 1
    return hoisted + rest


def _split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate recipe overrides from the fit/check options in ``argv``."""
    argv = _hoist_globals(argv)
    try:
        position = next(i for i, a in enumerate(argv) if a in ("fit", "check"))
    except StopIteration:
        return argv, []
    head, tail = argv[: position + 1], argv[position + 1 :]
    kept, overrides = [], []
    i = 0
    while i < len(tail):
        token = tail[i]
        name = token.split("=", 1)[0]
        if name in _OWN_OPTIONS:
            kept.append(token)
            if _OWN_OPTIONS[name] and "=" not in token and i + 1 < len(tail):
                kept.append(tail[i + 1])
                i += 1
        elif name.startswith("--"):
            overrides.append(token)
            if "=" not in token and i + 1 < len(tail) and not (tail[i + 1].startswith("--") and len(tail[i + 1]) > 2):
                overrides.append(tail[i + 1])
                i += 1
        else:
            overrides.append(token)
        i += 1
    return head + kept, overrides


def _registries(args):
    import contrastive

    return contrastive.load_registries(disable=args.disable_plugin)


def _cmd_fit(args, overrides: list[str]) -> int:
    from contrastive import recipe as recipes

    registries = _registries(args)
    recipe = recipes.load(args.fit.recipe, overrides, registries)
    if args.fit.print_config:
        print(recipes.dump(recipe), end="")
        return 0
    from contrastive.engine import fit

    results = fit(recipe, registries)
    if results:
        speed = results["views_per_second"]
        print(
            f"done: {results['steps']} steps, loss {results['loss']:.4f}, "
            f"{speed:.0f} views/s, {results['wall_time_s']:.0f} s -> {recipe.trainer.output_dir}"
            if speed
            else f"done -> {recipe.trainer.output_dir}"
        )
    return 0


def _cmd_check(args, overrides: list[str]) -> int:
    from contrastive import recipe as recipes

    registries = _registries(args)
    recipe = recipes.load(args.check.recipe, overrides, registries)
    parts = [f"data={recipe.data.name}", f"backbone={recipe.backbone.name}", f"head={recipe.head.name}",
             f"loss={recipe.loss.name}", f"optimizer={recipe.optimizer.name}", f"scheduler={recipe.scheduler.name}",
             "augmentation=" + ",".join(a.name for a in recipe.augmentation)]
    print("recipe OK: " + " ".join(parts))
    return 0


def _cmd_list(args) -> int:
    registries = _registries(args)
    kind = args.list.kind
    if kind is None:
        for name in registries.kinds():
            registry = registries[name]
            extra = " (+ every timm model)" if name == "backbones" else ""
            print(f"{name}: {', '.join(registry.explicit_names()) or '-'}{extra}")
        print("\nmore: contrastive list KIND [PATTERN] [--describe NAME]")
        return 0
    registry = registries[kind]
    if args.list.describe:
        print(registry.describe(args.list.describe))
        print(f"  registered by: {registry.source(args.list.describe)}")
        return 0
    names = registry.names(args.list.pattern)
    if registry.contract:
        print(f"# {kind}: {registry.contract}")
    for name in names:
        print(name)
    if not names:
        print(f"(no {kind} match '{args.list.pattern}')")
    return 0


def _cmd_plugins(args) -> int:
    registries = _registries(args)
    for info in registries.plugins:
        origin = "built-in" if info.builtin else f"{info.distribution} {info.version}"
        what = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.registered.items()) or "-"
        print(f"{info.name:28s} {origin:28s} {what}")
    from contrastive.plugins import AUTOLOAD_ENV, autoload_enabled

    if not autoload_enabled():
        print(f"(entry-point plugins are not loaded: {AUTOLOAD_ENV} is set)")
    return 0


def _one_line_warnings(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.formatwarning = _one_line_warnings
    debug = "--debug" in argv or os.environ.get("CONTRASTIVE_DEBUG") == "1"
    try:
        if PRINT_CONFIG in argv:
            argv = [("--print-config" if a == PRINT_CONFIG else a) for a in argv]
        argv, overrides = _split_overrides(argv)
        args = _parser().parse_args(argv)
        if args.command is None:
            _parser().print_help()
            return EXIT_USER_ERROR
        if args.command == "fit":
            return _cmd_fit(args, overrides)
        if args.command == "check":
            return _cmd_check(args, overrides)
        if args.command == "list":
            return _cmd_list(args)
        return _cmd_plugins(args)
    except ContrastiveError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
