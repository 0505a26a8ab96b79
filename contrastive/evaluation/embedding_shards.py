"""Frozen features written as shards, for data of any size (``contrastive embed --format shards``).

Layout of the output folder ``OUT/``::

    embed.json                 what is being written (run, data, split, rows, shard size); written first
    shard-00000.npy            (n_0, D) float32 features of shard 0
    shard-00000.csv            its table: ``index,label[,path]`` per row (index: position in the data)
    shard-00001.npy ...
    manifest.json              written last, once every shard is: the shards, rows, width, classes

Shard ``k`` holds the data's positions ``[k·R, (k+1)·R)`` (``R`` = ``shard_rows``, a multiple of the
batch size, so that every forward pass sees the batch one process would run: the features are bit for
bit those of one process whatever the number of processes).  Process ``r`` of ``W`` writes the shards
``k ≡ r (mod W)``, streaming: it holds one shard at a time, so peak memory is ``R × D × 4`` bytes (plus
one batch), whatever the size of the data.  A shard is written to a temporary name and renamed, its
features before its table, so a shard whose table exists is whole: a run killed half way leaves whole
shards, and the same command started again (any number of processes) writes only the missing ones.
Rows of files that could not be decoded are left out of their shard (``left_out`` in the manifest).

[`read_embeddings`][contrastive.evaluation.embedding_shards.read_embeddings] reads a folder (or an
``.npz`` of ``--format npz``) back as one set of arrays.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrastive.components.datasets.contract import dataset_info
from contrastive.distributed import barrier
from contrastive.errors import EvaluationError
from contrastive.evaluation.features import extract_features

SPEC, MANIFEST = "embed.json", "manifest.json"
FORMAT = "contrastive-embeddings"
#: Rows per shard by default: 16,384 × 2048 float32 features are 128 MiB in memory and on disk.
DEFAULT_SHARD_ROWS = 16_384


@dataclass(frozen=True)
class ShardLayout:
    """Which positions of ``count`` rows each shard holds (``rows`` per shard, the last one shorter)."""

    count: int
    rows: int

    @classmethod
    def for_batches(cls, count: int, shard_rows: int, batch_size: int) -> ShardLayout:
        """``shard_rows`` rounded up to a whole number of batches of ``batch_size``."""
        if shard_rows < 1 or batch_size < 1:
            raise EvaluationError(f"--shard-rows and --batch-size must be at least 1, got {shard_rows} and {batch_size}")
        return cls(count, -(-shard_rows // batch_size) * batch_size)

    @property
    def shards(self) -> int:
        return -(-self.count // self.rows)

    def positions(self, k: int) -> range:
        return range(k * self.rows, min(self.count, (k + 1) * self.rows))

    def owned_by(self, rank: int, world: int) -> list[int]:
        """The shards process ``rank`` of ``world`` writes: every ``world``-th, from ``rank``."""
        return list(range(rank, self.shards, world))


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def _replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def _write_table(path: Path, index: np.ndarray, labels: np.ndarray, paths: list[str] | None) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "label", "path"] if paths is not None else ["index", "label"])
        for i, row in enumerate(zip(index.tolist(), labels.tolist(), strict=True)):
            writer.writerow([*row, paths[i]] if paths is not None else row)


def _claim_folder(out: Path, spec: dict[str, Any]) -> int:
    """Create ``out`` with its ``embed.json``, or check that the one there asks for the same export;
    returns how many shards are already whole.  Main process only."""
    spec_path = out / SPEC
    if spec_path.exists():
        there = json.loads(spec_path.read_text())
        if there != spec:
            changed = sorted(key for key in set(spec) | set(there) if spec.get(key) != there.get(key))
            raise EvaluationError(
                f"{out} holds an export of other settings (differing: {', '.join(changed)}); "
                f"pass another --out, or delete {out} to write it again"
            )
    elif out.exists() and any(out.iterdir()):
        raise EvaluationError(f"{out} is a folder with other files in it; pass a new or empty folder as --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        _replace_atomically(spec_path, lambda tmp: tmp.write_text(json.dumps(spec, indent=2) + "\n"))
    return sum((out / f"{shard_name(k)}.csv").exists() for k in range(spec["shards"]))


def write_shards(
    backbone: torch.nn.Module, dataset, transform, out: Path, spec: dict[str, Any], *, shard_rows: int,
    batch_size: int, device: torch.device, group, rank: int = 0, world: int = 1,
) -> dict[str, Any]:
    """Write the features of every row of ``dataset`` under ``out`` (the module docstring has the layout).

    Every process of ``group`` calls this with the same arguments (``rank`` and ``world`` its place
    in it); each writes its own shards, the main process checks or creates the folder first and
    writes the manifest last.  ``spec`` (run, data, split, ...) is recorded in ``embed.json`` and must
    match on a resumed export.  Returns the manifest, plus ``resumed``: the shards found whole."""
    layout = ShardLayout.for_batches(len(dataset), shard_rows, batch_size)
    spec = {**spec, "format": FORMAT, "rows_in_data": layout.count, "shard_rows": layout.rows,
            "batch_size": batch_size, "shards": layout.shards}
    error: Exception | None = None
    resumed = 0
    if rank == 0:
        try:
            resumed = _claim_folder(out, spec)
        except (EvaluationError, OSError) as exc:
            error = exc
    error = _shared_error(error, group)
    info = dataset_info(dataset)
    for k in layout.owned_by(rank, world):
        name = shard_name(k)
        if (out / f"{name}.csv").exists():
            continue
        positions = list(layout.positions(k))
        feats, labels = extract_features(backbone, dataset, transform, batch_size=batch_size, device=device,
                                         indices=positions)
        bad = set(info.unreadable_indices())  # the datasets' skip rule: such a row holds another image
        keep = [i for i, p in enumerate(positions) if p not in bad]
        index = np.asarray([positions[i] for i in keep], dtype=np.int64)
        paths = [str(info.paths[p]) for p in index.tolist()] if info.paths is not None else None
        array = feats.numpy()[keep].astype(np.float32, copy=False)
        _replace_atomically(out / f"{name}.npy", lambda tmp, a=array: _save_npy(tmp, a))
        _replace_atomically(out / f"{name}.csv",
                            lambda tmp, i=index, y=labels.numpy()[keep], p=paths: _write_table(tmp, i, y, p))
    barrier(group)
    manifest: dict[str, Any] = {}
    if rank == 0:
        manifest = _write_manifest(out, spec, layout, list(info.classes or []))
    barrier(group)
    if rank != 0:
        manifest = json.loads((out / MANIFEST).read_text())
    return {**manifest, "resumed": resumed}


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.save(handle, array)


def _shared_error(error: Exception | None, group) -> None:
    """Raise on every process when the main process could not claim the folder (so none hangs)."""
    failed = torch.tensor([error is not None], dtype=torch.int64)
    if group is not None:
        import torch.distributed as dist

        dist.all_reduce(failed, group=group)
    if error is not None:
        raise error
    if int(failed):
        raise EvaluationError("the main process could not prepare the output folder (its error is above)")


def _write_manifest(out: Path, spec: dict[str, Any], layout: ShardLayout, classes: list[str]) -> dict[str, Any]:
    shards, rows, width = [], 0, None
    for k in range(layout.shards):
        name = shard_name(k)
        features = np.load(out / f"{name}.npy", mmap_mode="r")
        width = int(features.shape[1]) if features.ndim == 2 and width is None else width
        shards.append({"features": f"{name}.npy", "table": f"{name}.csv", "rows": int(features.shape[0])})
        rows += int(features.shape[0])
    manifest = {"format": FORMAT, "version": 1, "rows": rows, "num_features": width, "dtype": "float32",
                "left_out": layout.count - rows, "shard_rows": layout.rows, "shards": shards, "classes": classes,
                "run": spec.get("run"), "data": spec.get("data"), "split": spec.get("split")}
    _replace_atomically(out / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2) + "\n"))
    return manifest


def read_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an export: ``embeddings`` (N, D) float32, ``labels`` (N,) int64 (-1: none), and
    where the export has them ``index`` (N,) (position in the data; shards only), ``paths`` (N,) and
    ``classes``.  ``path``: an ``.npz`` file or a folder of shards (which must be complete: its
    ``manifest.json`` written).  Loads everything into memory: for data larger than memory, read the
    shards one by one (``np.load(..., mmap_mode="r")`` and the ``.csv`` tables the manifest lists)."""
    path = Path(path)
    if path.is_file():
        with np.load(path) as saved:
            return {name: saved[name] for name in saved.files}
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise EvaluationError(f"{path} has no {MANIFEST}: the export is not finished (run the same embed command again)")
    manifest = json.loads(manifest_path.read_text())
    features, index, labels, paths = [], [], [], []
    for shard in manifest["shards"]:
        features.append(np.load(path / shard["features"]))
        with (path / shard["table"]).open(newline="") as handle:
            for row in csv.DictReader(handle):
                index.append(int(row["index"]))
                labels.append(int(row["label"]))
                if "path" in row:
                    paths.append(row["path"])
    width = manifest["num_features"] or 0
    arrays = {"embeddings": np.concatenate(features) if features else np.zeros((0, width), np.float32),
              "labels": np.asarray(labels, dtype=np.int64), "index": np.asarray(index, dtype=np.int64)}
    if paths:
        arrays["paths"] = np.asarray(paths)
    if manifest.get("classes"):
        arrays["classes"] = np.asarray(manifest["classes"])
    return arrays
