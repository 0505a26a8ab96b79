"""CPU decode throughput of variable-size images: how ``image_folder`` / ``imagenet`` turn a JPEG
into the fixed-size uint8 item the training loop batches, one process, side by side.

Variants, all through the real :class:`contrastive.components.datasets.ImageFolderDataset`
except ``whole_no_draft`` (the same steps without PIL's reduced-size JPEG ``draft``):

* ``center_224``: ``crop: center`` at 224 (the old training path, now evaluation's): shorter side
  to 224, centre square;
* ``whole_draft_<S>``: ``crop: whole`` at S: the whole image decoded at the smallest DCT scale
  (1/1, 1/2, 1/4, 1/8) that keeps both sides >= S, squashed to S x S, plus its aspect ratio;
* ``whole_no_draft_<S>``: full-size decode, then the same squash.

Folder vs shards (``folder_vs_shards``; ``--no-shards`` skips it): the same 500 x 375 JPEGs read
the way training reads them at the first ``--sizes`` canvas (``crop: whole``), 2 x 2:

* ``folder`` / ``shards``: the files as they are, through ``image_folder`` (one file each) and
  through the ``webdataset`` stream over the shards ``contrastive shard`` writes of that folder
  (tar reading, sample grouping and decoding; shuffle buffer 1);
* ``folder_resized`` / ``shards_resized``: the same images re-encoded at that size (shorter side,
  JPEG quality 95: ``contrastive shard --image-size``), as a folder and as shards.

Synthetic files: ``--images`` JPEGs of 500 x 375 (ImageNet's typical size; quality 90, smooth
gradients plus noise) and ``--large`` of 2000 x 1500 (a phone photo; there the draft matters).
Rounds alternate the variants so that a shared machine's load spreads over all of them; the
median images/s over ``--rounds`` is reported (wall clock, and per CPU-second of this
single-threaded process, which a busy machine disturbs less), with the load average before and
after.

    python benchmarks/decode.py                # ~1 min on 2 shared cores
    python benchmarks/decode.py --quick        # seconds
    python benchmarks/decode.py --images 128 --large 0 --sizes 224 --rounds 3   # folder vs shards only, ~1 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from contrastive.components.datasets import ImageFolderDataset, webdataset
from contrastive.tools.shard_writer import reencode, write_shards


def make_jpegs(folder: str, n: int, width: int, height: int, seed: int = 0) -> None:
    """``n`` JPEGs of ``width`` x ``height`` (smooth colour gradients plus noise, quality 90)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(n):
        base = np.stack([(xx * rng.uniform(0.2, 1) + yy * rng.uniform(0, 0.5)) % 256,
                         (yy * rng.uniform(0.2, 1)) % 256, (xx + yy) * rng.uniform(0.1, 0.3) % 256], -1)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)


def whole_no_draft(path: str, size: int) -> tuple[torch.Tensor, float]:
    """``crop: whole`` without the draft: full-size decode, EXIF transpose, squash to size x size."""
    with Image.open(path) as img:
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
        aspect = img.size[0] / img.size[1]
        img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous(), aspect


def variants(folder: str, sizes: list[int]) -> dict[str, Any]:
    """name -> a function of the item index (decodes one image)."""
    out: dict[str, Any] = {}
    center = ImageFolderDataset(folder, image_size=224, crop="center")
    out["center_224"] = center.load_item
    for size in sizes:
        whole = ImageFolderDataset(folder, image_size=size, crop="whole")
        out[f"whole_draft_{size}"] = whole.load_item
        out[f"whole_no_draft_{size}"] = lambda i, paths=whole.paths, s=size: whole_no_draft(paths[i], s)
    return out


def measure(folder: str, sizes: list[int], rounds: int) -> dict[str, Any]:
    fns = variants(folder, sizes)
    n = len(os.listdir(folder))
    for fn in fns.values():  # warm-up: file cache, imports
        fn(0)
    rates: dict[str, list[float]] = {name: [] for name in fns}
    cpu_rates: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        order = list(fns) if r % 2 == 0 else list(reversed(fns))
        for name in order:
            start, cpu_start = time.perf_counter(), time.process_time()
            for i in range(n):
                fns[name](i)
            rates[name].append(n / (time.perf_counter() - start))
            cpu_rates[name].append(n / (time.process_time() - cpu_start))
    return {
        name: {
            "images_per_s": round(statistics.median(v), 1),
            "range": [round(min(v), 1), round(max(v), 1)],
            # per CPU-second of this (single-threaded) process: less sensitive to a busy machine
            "images_per_cpu_s": round(statistics.median(cpu_rates[name]), 1),
        }
        for name, v in rates.items()
    }


def timed_rounds(fns: dict[str, Any], n: int, rounds: int) -> dict[str, Any]:
    """Median images/s (wall and per CPU-second) of each ``fns[name]()``, which reads all ``n`` images;
    rounds alternate the order of the variants."""
    for fn in fns.values():  # warm-up: file cache, imports
        fn()
    rates: dict[str, list[float]] = {name: [] for name in fns}
    cpu_rates: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name in (list(fns) if r % 2 == 0 else list(reversed(fns))):
            start, cpu_start = time.perf_counter(), time.process_time()
            fns[name]()
            rates[name].append(n / (time.perf_counter() - start))
            cpu_rates[name].append(n / (time.process_time() - cpu_start))
    return {name: {"images_per_s": round(statistics.median(v), 1), "range": [round(min(v), 1), round(max(v), 1)],
                   "images_per_cpu_s": round(statistics.median(cpu_rates[name]), 1)} for name, v in rates.items()}


def measure_folder_vs_shards(folder: str, work: str, size: int, rounds: int, shard_size: int) -> dict[str, Any]:
    """The images of ``folder`` read for training at ``size`` (``crop: whole``) from the folder and
    from shards of it, as they are and re-encoded at ``size`` (see the module docstring)."""
    resized = os.path.join(work, "resized")
    os.makedirs(resized)
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(resized, name), "wb") as f:
            f.write(reencode(os.path.join(folder, name), size))
    sources = {"": folder, "_resized": resized}
    fns: dict[str, Any] = {}
    for suffix, source in sources.items():
        out = os.path.join(work, f"shards{suffix}")
        summary = write_shards(source, out, shard_size=shard_size)
        files = ImageFolderDataset(source, image_size=size, crop="whole")
        stream = webdataset(summary["splits"]["train"]["urls"], image_size=size, crop="whole", shuffle_buffer=1)
        fns[f"folder{suffix}"] = lambda files=files: [files.load_item(i) for i in range(len(files))]
        fns[f"shards{suffix}"] = lambda stream=stream: list(stream)
    n = len(os.listdir(folder))
    bytes_on_disk = {name: sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
                     for name, d in (("folder", folder), ("folder_resized", resized))}
    return {"images": n, "size": size, "shard_size": shard_size, "bytes": bytes_on_disk,
            **timed_rounds(fns, n, rounds)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256, help="500x375 JPEGs")
    parser.add_argument("--large", type=int, default=32, help="2000x1500 JPEGs (0: skip)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 256, 288], help="whole-image canvas sizes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="16 + 4 images, 1 round")
    parser.add_argument("--no-shards", dest="shards", action="store_false", help="skip folder vs shards")
    parser.add_argument("--shard-size", type=int, default=64, help="images per shard for folder vs shards")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.large, args.rounds = 16, 4, 1
    torch.set_num_threads(1)
    report: dict[str, Any] = {
        "command": "python benchmarks/decode.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "processes": 1,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "pillow": Image.__version__,
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory() as tmp:
        typical = os.path.join(tmp, "typical")
        make_jpegs(typical, args.images, 500, 375)
        report["jpeg_500x375"] = {"images": args.images, **measure(typical, args.sizes, args.rounds)}
        if args.shards:
            report["folder_vs_shards"] = measure_folder_vs_shards(typical, os.path.join(tmp, "vs"), args.sizes[0],
                                                                  args.rounds, args.shard_size)
        if args.large:
            large = os.path.join(tmp, "large")
            make_jpegs(large, args.large, 2000, 1500, seed=1)
            report["jpeg_2000x1500"] = {"images": args.large, **measure(large, args.sizes, args.rounds)}
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
