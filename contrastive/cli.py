"""The ``contrastive`` command line (jsonargparse subcommands).

    contrastive fit   [--recipe R] [--print_config] [overrides ...]
    contrastive check [--recipe R] [overrides ...]
    contrastive list  [KIND] [PATTERN] [--describe NAME]
    contrastive plugins
    contrastive eval  RUN_DIR [--protocol knn|linear|all] [--json] [--eval.* overrides]
    contrastive export RUN_DIR [OUT/] [--push REPO_ID [--private]] [--license ID]
    contrastive embed RUN_DIR [--split train|test] --out FILE.npz [--data.* overrides]
    contrastive sweep [--recipe R] --grid KEY=V1,V2 [--grid ...] --out DIR [overrides ...]
    contrastive shard FOLDER OUT/ [--shard-size N] [--image-size S] [--holdout F] [--seed N]
    contrastive report RUN_DIR [--out FILE.html]

Recipe overrides address any recipe key with dots (``--loss.args.temperature 0.2``); they are
split off before jsonargparse sees the command line because the set of valid keys depends on
the installed plugins.  Every user error exits with status 2 and a one-line cause; ``--debug``
shows the traceback.  Importing this module (and ``contrastive --help``) imports no torch.

Global options also come from the environment: ``CONTRASTIVE_DEBUG=1`` (``--debug``) and
``CONTRASTIVE_DISABLE_PLUGINS=a,b`` (``--disable-plugin a --disable-plugin b``).
``contrastive --print_completion shtab-bash`` (zsh, tcsh, ...; needs shtab) prints a completion
script for the subcommands and their options (recipe overrides are not completed: their keys
depend on the installed plugins).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import warnings
from collections.abc import Sequence

from jsonargparse import ArgumentError, ArgumentParser, DefaultHelpFormatter

from contrastive._version import __version__
from contrastive.errors import EXIT_USER_ERROR, ContrastiveError, ExportError, Preempted
from contrastive.plugins import DISABLE_ENV
from contrastive.recipe import settings_help

# Options of fit/check that are not recipe overrides (name -> takes a value).
_OWN_OPTIONS = {"--recipe": True, "--config": True, "--print-config": False, "-h": False, "--help": False}
# jsonargparse reserves --print_config for its own config files: we take it off the line first.
PRINT_CONFIG = "--print_config"
# sweep's own options (the rest of its line: recipe overrides for every cell).
_SWEEP_OPTIONS = {"--recipe": True, "--config": True, "--grid": True, "--out": True, "-h": False, "--help": False}
_COMMANDS = ("fit", "check", "list", "plugins", "eval", "embed", "export", "sweep", "shard", "report")
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


def _parser() -> ArgumentParser:
    _enable_completion()
    parser = ArgumentParser(
        prog="contrastive",
        description="Contrastive self-supervised learning (SimCLR, SupCon, multi-crop, plugin methods) from YAML "
        "recipes. Recipe overrides: any key with dots, e.g. --trainer.max_epochs 1 --method.name supcon.",
        exit_on_error=False,  # usage errors: one line from main(), like every other error
        formatter_class=_KeepLayout,  # subcommands take it too: fit's epilog lists the settings line by line
    )
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks of errors (or {DEBUG_ENV}=1)")
    parser.add_argument("--version", action="version", version=f"contrastive {__version__} (distribution contrastive-ssl)")
    parser.add_argument(
        "--disable-plugin", dest="disable_plugin", action="append", default=[], metavar="NAME",
        help=f"skip an installed plugin (entry-point or distribution name); repeatable (or {DISABLE_ENV}=a,b)",
    )
    parser.add_argument("--allow-pipe", dest="allow_pipe", action="store_true",
                        help="let webdataset pipe: URLs run their shell command (a recipe cannot allow it)")
    commands = parser.add_subcommands(dest="command")

    fit = ArgumentParser(exit_on_error=False, formatter_class=_KeepLayout, epilog=settings_help(), description="Train from a recipe; any recipe key can be overridden (--trainer.max_epochs 1).")
    fit.add_argument("--recipe", "--config", dest="recipe", default=None,
                     help="recipe YAML path or built-in name (default: quickstart); --config is the same")
    fit.add_argument("--print-config", dest="print_config", action="store_true",
                     help="print the resolved recipe and exit (also spelt --print_config)")
    commands.add_subcommand("fit", fit, help="train a method (default simclr) from a recipe")

    check = ArgumentParser(exit_on_error=False,
                           description="Validate a recipe's names and arguments and its evaluation set-up without training.")
    check.add_argument("--recipe", "--config", dest="recipe", default=None,
                       help="recipe YAML path or built-in name (default: quickstart); --config is the same")
    commands.add_subcommand("check", check, help="validate a recipe without building anything heavy")

    lister = ArgumentParser(exit_on_error=False, description="List registered components.")
    lister.add_argument("kind", nargs="?", default=None,
                        help="augmentations, backbones, heads, losses, methods, datasets, optimizers, schedulers, callbacks or protocols")
    lister.add_argument("pattern", nargs="?", default="*", help="shell wildcard, e.g. 'resnet*'")
    lister.add_argument("--describe", default=None, metavar="NAME", help="show a component's arguments and summary")
    commands.add_subcommand("list", lister, help="list registered components")

    plugins = ArgumentParser(exit_on_error=False, description="List the loaded plugins, their distributions and what they registered.")
    commands.add_subcommand("plugins", plugins, help="list loaded plugins")

    evaluator = ArgumentParser(
        exit_on_error=False,
        description="Score a finished run's frozen backbone (kNN and linear probe) beside random-init and raw-pixel "
        "baselines. Eval settings can be overridden: --eval.knn_k 20, --eval.baselines '[]', --eval.test_data.name ..."
    )
    evaluator.add_argument("run_dir", help="the run's trainer.output_dir (holds config.yaml and backbone.safetensors)")
    evaluator.add_argument(
        "--protocol", default="auto", choices=["auto", "knn", "linear", "label_free", "all"],
        help="which protocol(s) to run: auto (knn + linear on labelled data, label_free otherwise), all (knn + linear)",
    )
    evaluator.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    commands.add_subcommand("eval", evaluator, help="evaluate a finished run (kNN, linear probe, baselines)")

    embedder = ArgumentParser(
        exit_on_error=False,
        description="Write a finished run's frozen features to an .npz file: embeddings (N x num_features float32), "
        "labels (-1: none), paths (file-based data: the image of each row), classes. --data.name/--data.args.* "
        "point it at other data."
    )
    embedder.add_argument("run_dir", help="the run's trainer.output_dir (holds config.yaml and backbone.safetensors)")
    embedder.add_argument("--split", default="test", choices=["train", "test", "all"],
                          help="which split of the run's data: its evaluation train / test data (a folder: the kept / "
                          "held-out images) or all training images; ignored when --data.name names other data")
    embedder.add_argument("--out", required=True, help="output file (.npz)")
    embedder.add_argument("--batch-size", dest="batch_size", type=int, default=None, help="images per forward pass")
    commands.add_subcommand("embed", embedder, help="export a finished run's embeddings to .npz")

    exporter = ArgumentParser(
        exit_on_error=False,
        description="Write a run's backbone as a folder timm loads: model.safetensors + config.json (architecture, "
        "model args, the run's input size and mean/std): timm.create_model('local-dir:OUT', pretrained=True); "
        "the folder is the Hugging Face Hub layout (upload it to use hf-hub:USER/NAME).",
    )
    exporter.add_argument("run_dir", help="the run's trainer.output_dir")
    exporter.add_argument("out", nargs="?", default=None, help="an empty or new folder (default: RUN_DIR/export)")
    exporter.add_argument("--push", default=None, metavar="REPO_ID",
                          help="also upload the folder to the Hugging Face Hub as REPO_ID (USER/NAME); needs "
                          "huggingface_hub and a token (hf auth login, or HF_TOKEN)")
    exporter.add_argument("--private", action="store_true", help="with --push: create the repo private")
    exporter.add_argument("--license", default=None, metavar="ID",
                          help="the weights' licence for the model card's metadata, a Hub licence id (apache-2.0, mit, ...)")
    commands.add_subcommand("export", exporter, help="export a run's backbone for timm / the Hugging Face Hub")

    sweeper = ArgumentParser(
        exit_on_error=False,
        description="Train every cell of a grid of recipe overrides one after another, each in DIR/<cell>, and "
        "write DIR/sweep.csv, sweep.json and heatmap.png (kNN and linear top-1 per cell). Other recipe overrides "
        "apply to every cell. Rerunning the same command skips finished cells and continues an interrupted one.",
    )
    sweeper.add_argument("--recipe", "--config", dest="recipe", default=None,
                         help="recipe YAML path or built-in name (default: quickstart)")
    sweeper.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                         help="one axis of the grid: a recipe key and its values (parsed as overrides); repeatable")
    sweeper.add_argument("--out", required=True, help="the sweep's folder: one run directory per cell and the tables")
    commands.add_subcommand("sweep", sweeper, help="train a grid of recipe variants (e.g. temperature x batch size)")

    sharder = ArgumentParser(exit_on_error=False, description="Write an image folder (class sub-folders: labels) as "
                             "webdataset tar shards with a shards.json index, for --data.name webdataset.")
    sharder.add_argument("folder", help="the image folder, read as image_folder reads it")
    sharder.add_argument("out", help="a new or empty folder for the shards")
    sharder.add_argument("--shard-size", dest="shard_size", type=int, default=1000, help="images per shard")
    sharder.add_argument("--image-size", dest="image_size", type=int, default=None,
                         help="re-encode as JPEG with the shorter side at most S (default: files stored as they are)")
    sharder.add_argument("--holdout", type=float, default=0.0,
                         help="share written as test shards (stratified, seeded), for evaluation")
    sharder.add_argument("--seed", type=int, default=0, help="seeds the order of the samples and the hold-out")
    commands.add_subcommand("shard", sharder, help="write an image folder as webdataset tar shards")

    reporter = ArgumentParser(
        exit_on_error=False,
        description="Write one self-contained HTML page of what a run learned: training curves, online kNN, the "
        "final table, a 2-D map of the test embeddings, nearest neighbours and an augmentation preview.",
    )
    reporter.add_argument("run_dir", help="the run's trainer.output_dir")
    reporter.add_argument("--out", default=None, help="the page to write (default: RUN_DIR/report.html)")
    reporter.add_argument("--map", dest="map_method", default="auto", choices=["auto", "tsne", "pca"],
                          help="2-D map of the test embeddings: auto (t-SNE up to 3000 points, else PCA), tsne or pca")
    reporter.add_argument("--map-points", dest="map_points", type=int, default=None,
                          help="test images on the map, a seeded sample of larger sets (default: 2000)")
    commands.add_subcommand("report", reporter, help="write an HTML report of a run (curves, table, map, neighbours)")
    return parser


def _is_option(token: str) -> bool:
    return token.startswith("--") and len(token) > 2


def _partition(tokens: list[str], is_taken, takes_value) -> tuple[list[str], list[str]]:
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
        if "=" not in token and takes_value(name) and i + 1 < len(tokens) and not _is_option(tokens[i + 1]):
            target.append(tokens[i + 1])
            i += 1
        i += 1
    return taken, rest


def _hoist_globals(argv: list[str]) -> list[str]:
    """Move global options (``--debug``, ``--disable-plugin X``) in front of the subcommand."""
    hoisted, rest = _partition(argv, lambda name: name in _GLOBAL_OPTIONS, lambda name: _GLOBAL_OPTIONS.get(name, False))
    return hoisted + rest


# eval/embed: recipe keys they accept as overrides (the rest of the line is theirs).
_EVAL_COMMANDS = {"eval": ("--eval.",), "embed": ("--data.",)}


def _split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate recipe overrides from the subcommand's own options in ``argv``.

    fit/check/sweep: every ``--key`` that is not one of their options is a recipe override
    (values follow); eval/embed: only ``--eval.*`` / ``--data.*``.
    """
    argv = _hoist_globals(argv)
    for position, token in enumerate(argv):
        if token in _EVAL_COMMANDS:
            prefixes = _EVAL_COMMANDS[token]
            overrides, kept = _partition(
                argv[position + 1 :], lambda name, prefixes=prefixes: name.startswith(prefixes), lambda name: True
            )
            return argv[: position + 1] + kept, overrides
        if token in ("fit", "check", "sweep"):
            own = _SWEEP_OPTIONS if token == "sweep" else _OWN_OPTIONS
            overrides, kept = _partition(
                argv[position + 1 :],
                lambda name, own=own: name not in own,
                lambda name, own=own: own.get(name, _is_option(name)),
            )
            return argv[: position + 1] + kept, overrides
    return argv, []


def _registries(args):
    import contrastive

    return contrastive.load_registries(disable=args.disable_plugin)


def _cmd_fit(args, overrides: list[str]) -> int:
    from contrastive import recipe as recipes

    registries = _registries(args)
    recipe = recipes.load(args.fit.recipe, overrides, registries)
    if args.fit.print_config:
        processes = int(os.environ.get("WORLD_SIZE", "1"))  # as a launcher sets it; 1 otherwise
        resolved = copy.copy(recipe)
        resolved.trainer = recipes.resolve_batch(recipe.trainer, processes)  # batch_size / accumulate as they will run
        print(recipes.dump(resolved), end="")
        print(f"# {recipes.batch_resolution(resolved.trainer, processes)}"
              + ("" if "WORLD_SIZE" in os.environ else " (run alone; under accelerate launch / torchrun: for its processes)"))
        return 0
    from contrastive.training import fit

    results = fit(recipe, registries)
    if results:
        speed = results["views_per_second"]
        print(
            f"done: {results['steps']} steps, loss {results['loss']:.4f}, "
            f"{speed:.0f} views/s, {results['wall_time_s']:.0f} s -> {recipe.trainer.output_dir}"
            if speed
            else f"done -> {recipe.trainer.output_dir}"
        )
        if results.get("eval"):
            from contrastive.evaluation import format_table

            print(format_table(results["eval"]))
            print(f"(evaluation {results['eval']['wall_time_s']:.0f} s; again: contrastive eval {recipe.trainer.output_dir})")
        if results.get("report"):
            print(f"report: {results['report']}")
    return 0


def _cmd_eval(args, overrides: list[str]) -> int:
    from contrastive.evaluation import default_device, evaluate, format_table, load_run

    registries = _registries(args)
    recipe, backbone = load_run(args.eval.run_dir, registries, overrides)
    protocol = args.eval.protocol
    protocols = "auto" if protocol == "auto" else ["knn", "linear"] if protocol == "all" else [protocol]
    device = default_device()
    results = evaluate(backbone.to(device), recipe, registries, protocols=protocols, device=device)
    if args.eval.json:
        import json

        print(json.dumps(results, indent=2))
    else:
        print(format_table(results))
    return 0


def _cmd_embed(args, overrides: list[str]) -> int:
    from contrastive.evaluation import embed

    registries = _registries(args)
    summary = embed(args.embed.run_dir, args.embed.out, registries, split=args.embed.split,
                    data_overrides=overrides, batch_size=args.embed.batch_size)
    n, d = summary["shape"]
    paths = " with their image paths" if summary.get("paths") else ""
    skipped = f"; {summary['left_out']} undecodable file(s) left out" if summary.get("left_out") else ""
    print(f"wrote {summary['out']}: {n} x {d} embeddings{paths} of {summary['data']['name']} {summary['data']['args']}"
          f"{skipped}")
    return 0


def _cmd_export(args) -> int:
    from contrastive.tools import hub
    from contrastive.tools.export import export

    repo_id = args.export.push
    if repo_id:
        hub.check_ready(repo_id)  # installed, a repo id, a token: before anything is written
    elif args.export.private:
        raise ExportError("--private goes with --push REPO_ID")
    out = args.export.out or os.path.join(args.export.run_dir, "export")
    done = export(args.export.run_dir, out, _registries(args), repo_id=repo_id, license=args.export.license)
    print(f"wrote {done['out']}: {done['backbone']} backbone ({done['num_features']} features), "
          f"model.safetensors + config.json + README.md (model card)")
    if repo_id:
        print(f"pushed {', '.join(done['files'])} to {repo_id}: {hub.push(done['out'], repo_id, private=args.export.private)}")
    source = f"hf-hub:{repo_id}" if repo_id else f"local-dir:{done['out']}"
    if done["timm_loads"]:
        print(f"load it with timm.create_model('{source}', pretrained=True)")
    else:
        where = f'snapshot_download("{repo_id}")' if repo_id else f"'{done['out']}'"
        print(f"note: timm's config cannot express the CIFAR stem (cifar_stem: true): load it with "
              f"contrastive.load_backbone({where})")
    return 0


def _cmd_sweep(args, overrides: list[str]) -> int:
    from contrastive.tools import sweep

    registries = _registries(args)
    planned = sweep.plan(args.sweep.recipe, args.sweep.grid, overrides, args.sweep.out, registries)
    try:
        sweep.run(planned, registries)
    finally:
        print(sweep.format_table(planned))
    return 0


def _cmd_shard(args) -> int:
    from contrastive.tools.shard_writer import describe, write_shards

    a = args.shard
    summary = write_shards(a.folder, a.out, shard_size=a.shard_size, image_size=a.image_size, holdout=a.holdout,
                           seed=a.seed)
    print("\n".join(describe(summary)))
    return 0


def _cmd_report(args) -> int:
    from contrastive.evaluation.report import write_report

    options = args.report
    points = {} if options.map_points is None else {"map_points": options.map_points}
    path = write_report(options.run_dir, _registries(args), out=options.out, map_method=options.map_method, **points)
    print(f"report: {path}")
    return 0


def _cmd_check(args, overrides: list[str]) -> int:
    from contrastive import recipe as recipes

    registries = _registries(args)
    recipe = recipes.load(args.check.recipe, overrides, registries)
    parts = [f"method={recipe.method.name}", f"data={recipe.data.name}", f"backbone={recipe.backbone.name}",
             *[f"{key}={getattr(recipe, key).name}" for key in ("head", "loss", "predictor") if getattr(recipe, key)],
             f"optimizer={recipe.optimizer.name}", f"scheduler={recipe.scheduler.name}"]
    if recipe.views is None:
        parts.append("augmentation=" + ",".join(a.name for a in recipe.augmentation))
    else:
        parts += [f"views.{i}={g.count}x" + ",".join(a.name for a in g.augmentation) for i, g in enumerate(recipe.views)]
    if recipe.callbacks:
        parts.append("callbacks=" + ",".join(c.name for c in recipe.callbacks))
    print("recipe OK: " + " ".join(parts))
    from contrastive.evaluation.data import plan_eval  # reads file lists and labels only, decodes nothing

    plan = plan_eval(recipe, registries)
    print(plan.summary)
    for note in plan.notes:
        print(f"note: {note}")
    return 0


def _cmd_list(args) -> int:
    registries = _registries(args)
    kind = args.list.kind
    if kind is None:
        for name in registries.kinds():
            registry = registries[name]
            families = "".join(f" (+ {getattr(r, 'description', type(r).__name__)})" for r in registry.resolvers())
            print(f"{name}: {', '.join(registry.explicit_names()) or '-'}{families}")
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
    width = max([24] + [len(n) + 1 for n in names if len(n) < 40])
    for name in names:  # with the first line of their docstring, or their resolver's summary
        family = getattr(registry.get(name), "family", None) if kind == "methods" else None
        tag = f" [family: {family}]" if isinstance(family, str) else ""
        print(f"{name:{width}s} {registry.summary(name)}{tag}".rstrip())
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.formatwarning = _one_line_warnings
    debug = "--debug" in argv or env_flag(DEBUG_ENV)
    try:
        _check_completion_request(argv)
        if PRINT_CONFIG in argv:
            argv = [("--print-config" if a == PRINT_CONFIG else a) for a in argv]
        argv, overrides = _split_overrides(argv)
        try:
            args = _parser().parse_args(argv)
        except ArgumentError as exc:
            command = next((a for a in argv if a in _COMMANDS), "")
            message = " ".join(str(exc).split())
            print(f"error: {message} (contrastive {command + ' ' if command else ''}--help lists the options)", file=sys.stderr)
            return EXIT_USER_ERROR
        if args.command is None:
            _parser().print_help()
            return EXIT_USER_ERROR
        if args.allow_pipe:
            from contrastive.recipe.trust import allow_pipe

            allow_pipe()
        if args.command == "fit":
            return _cmd_fit(args, overrides)
        if args.command == "check":
            return _cmd_check(args, overrides)
        if args.command == "list":
            return _cmd_list(args)
        if args.command == "eval":
            return _cmd_eval(args, overrides)
        if args.command == "embed":
            return _cmd_embed(args, overrides)
        if args.command == "export":
            return _cmd_export(args)
        if args.command == "sweep":
            return _cmd_sweep(args, overrides)
        if args.command == "shard":
            return _cmd_shard(args)
        if args.command == "report":
            return _cmd_report(args)
        return _cmd_plugins(args)
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
