"""``contrastive report``: one self-contained HTML page of what a run learned."""

from __future__ import annotations

from contrastive.commands.command import Command, registries


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="the run's trainer.output_dir")
    parser.add_argument("--out", default=None, help="the page to write (default: RUN_DIR/report.html)")
    parser.add_argument("--map", dest="map_method", default="auto", choices=["auto", "tsne", "pca"],
                        help="2-D map of the test embeddings: auto (t-SNE up to 3000 points, else PCA), tsne or pca")
    parser.add_argument("--map-points", dest="map_points", type=int, default=None,
                        help="test images on the map, a seeded sample of larger sets (default: 2000)")


def run(args, overrides: list[str]) -> int:
    from contrastive.evaluation.report import write_report

    options = args.report
    points = {} if options.map_points is None else {"map_points": options.map_points}
    path = write_report(options.run_dir, registries(args), out=options.out, map_method=options.map_method, **points)
    print(f"report: {path}")
    return 0


COMMAND = Command(
    name="report",
    help="write an HTML report of a run (curves, table, map, neighbours)",
    usage="RUN_DIR [--out FILE.html] [--map auto|tsne|pca] [--map-points N]",
    description="Write one self-contained HTML page of what a run learned: training curves, online kNN, the "
    "final table, a 2-D map of the test embeddings, nearest neighbours and an augmentation preview.",
    add_arguments=add_arguments,
    run=run,
)
