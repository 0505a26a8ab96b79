"""``contrastive embed``: write a finished run's frozen features to an .npz file or a folder of shards."""

from __future__ import annotations

from contrastive.commands.command import Command, registries
from contrastive.commands.evaluate import RUN_DIR_HELP


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help=RUN_DIR_HELP)
    parser.add_argument("--split", default="test", choices=["train", "test", "all"],
                        help="which split of the run's data: its evaluation train / test data (a folder: the kept / "
                        "held-out images) or all training images; ignored when --data.name names other data")
    parser.add_argument("--out", required=True, help="output file (.npz) or, with --format shards, output folder")
    parser.add_argument("--format", default="npz", choices=["npz", "shards"],
                        help="npz: one file, features held in memory (small data); shards: a folder of .npy shards "
                        "with a .csv table each and a manifest.json, streamed and resumable (data of any size)")
    parser.add_argument("--shard-rows", dest="shard_rows", type=int, default=16_384,
                        help="rows per shard with --format shards (rounded up to whole batches; default: 16384)")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=None, help="images per forward pass")


def run(args, overrides: list[str]) -> int:
    """Under a launcher (``torchrun``, ``accelerate launch``) every process extracts its shard of the
    features on its own device; the main process alone writes the file and prints."""
    from contrastive.distributed import join_launch
    from contrastive.evaluation import embed

    main, device = join_launch()
    options = args.embed
    summary = embed(options.run_dir, options.out, registries(args), split=options.split,
                    data_overrides=overrides, batch_size=options.batch_size, device=device, format=options.format,
                    shard_rows=options.shard_rows)
    if not main:
        return 0
    n, d = summary["shape"]
    paths = " with their image paths" if summary.get("paths") else ""
    skipped = f"; {summary['left_out']} undecodable file(s) left out" if summary.get("left_out") else ""
    where = summary["out"]
    if "shards" in summary:
        resumed = f", {summary['resumed']} of them already written before" if summary["resumed"] else ""
        where = f"{where}/ ({summary['shards']} shards{resumed}; manifest.json lists them)"
    print(f"wrote {where}: {n} x {d} embeddings{paths} of {summary['data']['name']} {summary['data']['args']}"
          f"{skipped}")
    return 0


COMMAND = Command(
    name="embed",
    help="export a finished run's embeddings to .npz or a folder of shards",
    usage="RUN_DIR [--split train|test|all] --out FILE.npz | --out DIR --format shards [--data.* overrides]",
    description="Write a finished run's frozen features to an .npz file: embeddings (N x num_features float32), "
    "labels (-1: none), paths (file-based data: the image of each row), classes; or, with --format shards, to "
    "a folder of .npy shards with a .csv table (index, label, path) each, written by every process, streamed "
    "(memory independent of the data's size) and resumed when the same command runs again. "
    "--data.name/--data.args.* point it at other data.",
    add_arguments=add_arguments,
    run=run,
    overrides=("--data.",),
)
