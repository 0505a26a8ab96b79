"""``contrastive shard``: an image folder as webdataset tar shards."""

from __future__ import annotations

from contrastive.commands.command import Command


def add_arguments(parser) -> None:
    parser.add_argument("folder", help="the image folder, read as image_folder reads it")
    parser.add_argument("out", help="a new or empty folder for the shards")
    parser.add_argument("--shard-size", dest="shard_size", type=int, default=1000, help="images per shard")
    parser.add_argument("--image-size", dest="image_size", type=int, default=None,
                        help="re-encode as JPEG with the shorter side at most S (default: files stored as they are)")
    parser.add_argument("--holdout", type=float, default=0.0,
                        help="share written as test shards (stratified, seeded), for evaluation")
    parser.add_argument("--seed", type=int, default=0, help="seeds the order of the samples and the hold-out")


def run(args, overrides: list[str]) -> int:
    from contrastive.tools.shard_writer import describe, write_shards

    a = args.shard
    summary = write_shards(a.folder, a.out, shard_size=a.shard_size, image_size=a.image_size, holdout=a.holdout,
                           seed=a.seed)
    print("\n".join(describe(summary)))
    return 0


COMMAND = Command(
    name="shard",
    help="write an image folder as webdataset tar shards",
    usage="FOLDER OUT/ [--shard-size N] [--image-size S] [--holdout F] [--seed N]",
    description="Write an image folder (class sub-folders: labels) as webdataset tar shards with a shards.json "
    "index, for --data.name webdataset.",
    add_arguments=add_arguments,
    run=run,
)
