"""``contrastive shard FOLDER OUT/``: an image folder written as webdataset tar shards.

The folder is read exactly as the ``image_folder`` dataset reads it (its listing: formats, hidden
files, symbolic links followed once, zero-byte files dropped; class sub-folders become labels),
so the shards hold the same images.  Each sample is ``KEY.<ext>`` (the image), ``KEY.cls`` (its
class number, when the folder has classes) and ``KEY.path.txt`` (its path below FOLDER); samples
are written in a seeded random order, so that every shard mixes the classes (what a stream's
shuffle buffer expects).  ``--holdout F`` writes a stratified, seeded share of the images as
``test-*.tar`` — the same images ``image_folder`` with ``eval.holdout F`` and that seed holds out.
``shards.json`` beside them lists every shard with its sample count and the class names: the
``webdataset`` dataset reads it for the epoch length and the labels, and evaluation finds the
test shards in it.

Without ``--image-size`` each file's bytes are stored unchanged (a damaged file is then skipped
when training reads it, as in a folder); with it, images are decoded (EXIF orientation applied,
converted to RGB or greyscale), shrunk so that the shorter side is at most S (never enlarged; the
aspect ratio kept) and stored as JPEG (quality 95) — smaller shards and faster decoding; files
that cannot be decoded are skipped and counted.
"""

from __future__ import annotations

import io
import json
import os
import random
from typing import Any

from contrastive.errors import DataError, InvalidArgumentsError

#: JPEG quality of re-encoded images (--image-size).
JPEG_QUALITY = 95
EXTENSION_FIELDS = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".webp": "webp", ".bmp": "bmp", ".gif": "gif",
                    ".tif": "tiff", ".tiff": "tiff"}


def _check(shard_size: Any, image_size: Any, holdout: Any) -> None:
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise InvalidArgumentsError(f"shard: --shard-size must be a positive number of images per shard, got {shard_size!r}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8):
        raise InvalidArgumentsError(f"shard: --image-size must be at least 8 (pixels of the shorter side), got {image_size!r}")
    if not isinstance(holdout, (int, float)) or isinstance(holdout, bool) or not 0 <= holdout < 1:
        raise InvalidArgumentsError(f"shard: --holdout must be a share in [0, 1) (e.g. 0.1), got {holdout!r}")


def _prepare_out(out: str) -> None:
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise DataError(f"shard: {out} exists and is not an empty folder; pick a new or empty OUT folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise DataError(f"shard: cannot create {out}: {exc.strerror or exc}") from None


def reencode(path: str, size: int) -> bytes:
    """The image at ``path`` as JPEG bytes, EXIF orientation applied, RGB (greyscale kept grey), the
    shorter side shrunk to ``size`` when larger; raises [`DataError`][contrastive.errors.DataError] when it cannot be decoded."""
    from PIL import Image, ImageOps

    from contrastive.components.datasets.folder import to_mode

    try:
        with Image.open(path) as img:
            grey = img.mode in ("1", "L", "LA", "I", "F") or img.mode.startswith("I;16")
            w, h = img.size
            if min(w, h) > size:
                scale = size / min(w, h)
                img.draft("L" if grey else "RGB", (round(w * scale), round(h * scale)))
            img.load()
            img = ImageOps.exif_transpose(img)
            img = to_mode(img, 1 if grey else 3)
    except Exception as exc:  # PIL raises many types for damaged files
        raise DataError(f"cannot decode {path}: {type(exc).__name__}: {exc}") from None
    w, h = img.size
    if min(w, h) > size:
        scale = size / min(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _pattern(out: str, split: str, count: int) -> str:
    last = f"{count - 1:06d}"
    return os.path.join(out, f"{split}-{{000000..{last}}}.tar") if count > 1 else os.path.join(out, f"{split}-000000.tar")


def write_shards(
    folder: str, out: str, *, shard_size: int = 1000, image_size: int | None = None, holdout: float = 0.0,
    seed: int = 0, labels: bool | None = None,
) -> dict[str, Any]:
    """Write the images of ``folder`` as tar shards of ``shard_size`` samples into the empty or new
    folder ``out`` (``train-000000.tar`` ..., and ``test-*.tar`` for ``holdout``), with the index
    ``shards.json``; ``labels`` as ``image_folder``'s (None: class sub-folders decide).  Returns a
    summary: per split the shard count, images and brace pattern; ``skipped``: files left out."""
    _check(shard_size, image_size, holdout)
    from contrastive.components.datasets import ImageFolderDataset
    from contrastive.components.datasets.shard_source import INDEX_FORMAT, INDEX_NAME, import_webdataset
    from contrastive.storage.files import atomic_write_text

    wds = import_webdataset()
    source = ImageFolderDataset(folder, labels=labels)  # the folder as training reads it; nothing decoded
    labelled = source.has_labels
    indices = list(range(len(source)))
    splits = {"train": indices}
    if holdout > 0:
        from contrastive.evaluation.holdout import split_indices

        kept, held = split_indices(source.labels, holdout, seed, what=f"the folder {folder}", classes=source.classes)
        splits = {"train": kept, "test": held}
    _prepare_out(out)
    skipped = list(source.empty_files)
    index: dict[str, Any] = {"format": INDEX_FORMAT, "version": 1, "source": os.path.abspath(folder),
                             "classes": source.classes, "image_size": image_size, "seed": seed, "holdout": holdout,
                             "splits": {}}
    summary: dict[str, Any] = {"out": out, "splits": {}}
    for split, members in splits.items():
        order = list(members)
        random.Random(f"contrastive-shard:{seed}:{split}").shuffle(order)
        counts: dict[str, int] = {}
        writer = None
        written = 0
        try:
            for i in order:
                path = source.paths[i]
                if image_size is None:
                    with open(path, "rb") as f:
                        payload, field = f.read(), EXTENSION_FIELDS.get(os.path.splitext(path)[1].lower(), "jpg")
                else:
                    try:
                        payload, field = reencode(path, image_size), "jpg"
                    except DataError as exc:
                        skipped.append(path)
                        print(f"warning: skipping {exc}")
                        continue
                sample = {"__key__": f"{written:08d}", field: payload,
                          "path.txt": os.path.relpath(path, folder).encode("utf-8")}
                if labelled:
                    sample["cls"] = str(int(source.labels[i])).encode("ascii")
                if writer is None:  # opened on the first sample: a split with none writes no empty shard
                    writer = wds.ShardWriter(os.path.join(out, f"{split}-%06d.tar"), maxcount=shard_size,
                                             maxsize=float("inf"), verbose=0, mtime=0)
                writer.write(sample)
                name = os.path.basename(writer.fname)
                counts[name] = counts.get(name, 0) + 1
                written += 1
        finally:
            if writer is not None:
                writer.close()
        index["splits"][split] = [{"name": n, "samples": c, "labelled": c if labelled else 0} for n, c in counts.items()]
        summary["splits"][split] = {"shards": len(counts), "images": written, "urls": _pattern(out, split, len(counts))}
    if summary["splits"]["train"]["images"] == 0:
        raise DataError(f"shard: no image of {folder} could be written ({len(skipped)} skipped); check that they are images")
    index["skipped"] = {"count": len(skipped), "first": skipped[:5]}
    atomic_write_text(os.path.join(out, INDEX_NAME), json.dumps(index, indent=1) + "\n")
    summary["skipped"] = len(skipped)
    summary["classes"] = source.classes
    return summary


def describe(summary: dict[str, Any]) -> list[str]:
    """What ``contrastive shard`` prints: the shards written and the command that trains on them."""
    lines = []
    for split, info in summary["splits"].items():
        lines.append(f"wrote {info['shards']} {split} shard(s), {info['images']} images: {info['urls']}")
    if summary["skipped"]:
        lines.append(f"skipped {summary['skipped']} unreadable or empty file(s)")
    kinds = f"{len(summary['classes'])} classes" if summary["classes"] else "no labels"
    lines.append(f"({kinds}; index {os.path.join(summary['out'], 'shards.json')})")
    lines.append(f"train on them: contrastive fit --recipe recipes/simclr_folder.yaml --data.name webdataset "
                 f"--data.args.urls '{summary['splits']['train']['urls']}'")
    return lines
