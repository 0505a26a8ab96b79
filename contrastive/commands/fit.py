"""``contrastive fit``: train from a recipe."""

from __future__ import annotations

import copy
import os

from contrastive.commands.command import RECIPE, Command, registries
from contrastive.recipe import settings_help


def add_arguments(parser) -> None:
    parser.add_argument("--recipe", "--config", dest="recipe", default=None,
                        help="recipe YAML path or built-in name (default: quickstart); --config is the same")
    parser.add_argument("--print-config", dest="print_config", action="store_true",
                        help="print the resolved recipe and exit (also spelt --print_config)")


def run(args, overrides: list[str]) -> int:
    from contrastive import recipe as recipes

    loaded = registries(args)
    recipe = recipes.load(args.fit.recipe, overrides, loaded)
    if args.fit.print_config:
        processes = int(os.environ.get("WORLD_SIZE", "1"))  # as a launcher sets it; 1 otherwise
        resolved = copy.copy(recipe)
        resolved.trainer = recipes.resolve_batch(recipe.trainer, processes)  # batch_size / accumulate as they will run
        print(recipes.dump(resolved), end="")
        print(f"# {recipes.batch_resolution(resolved.trainer, processes)}"
              + ("" if "WORLD_SIZE" in os.environ else " (run alone; under accelerate launch / torchrun: for its processes)"))
        return 0
    from contrastive.training import fit

    results = fit(recipe, loaded)
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


COMMAND = Command(
    name="fit",
    help="train a method (default simclr) from a recipe",
    usage="[--recipe R] [--print_config] [overrides ...]",
    description="Train from a recipe; any recipe key can be overridden (--trainer.max_epochs 1).",
    add_arguments=add_arguments,
    run=run,
    overrides=RECIPE,
    epilog=settings_help,
)
