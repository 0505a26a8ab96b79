"""``contrastive sweep``: train a grid of recipe variants, one run directory per cell."""

from __future__ import annotations

from contrastive.commands.command import RECIPE, Command, registries


def add_arguments(parser) -> None:
    parser.add_argument("--recipe", "--config", dest="recipe", default=None,
                        help="recipe YAML path or built-in name (default: quickstart)")
    parser.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                        help="one axis of the grid: a recipe key and its values (parsed as overrides); repeatable")
    parser.add_argument("--out", required=True, help="the sweep's folder: one run directory per cell and the tables")


def run(args, overrides: list[str]) -> int:
    from contrastive.tools import sweep

    loaded = registries(args)
    planned = sweep.plan(args.sweep.recipe, args.sweep.grid, overrides, args.sweep.out, loaded)
    try:
        sweep.run(planned, loaded)
    finally:
        print(sweep.format_table(planned))
    return 0


COMMAND = Command(
    name="sweep",
    help="train a grid of recipe variants (e.g. temperature x batch size)",
    usage="[--recipe R] --grid KEY=V1,V2 [--grid ...] --out DIR [overrides ...]",
    description="Train every cell of a grid of recipe overrides one after another, each in DIR/<cell>, and "
    "write DIR/sweep.csv, sweep.json and heatmap.png (kNN and linear top-1 per cell). Other recipe overrides "
    "apply to every cell. Rerunning the same command skips finished cells and continues an interrupted one.",
    add_arguments=add_arguments,
    run=run,
    overrides=RECIPE,
)
