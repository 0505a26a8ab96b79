"""The evaluation protocols against the size of the data: time and peak memory of the kNN
(``contrastive.evaluation.knn``) and of each linear probe solver (full-batch L-BFGS, mini-batch),
beside scikit-learn's ``KNeighborsClassifier`` and ``LogisticRegression`` where it is installed
(the ``bench`` extra), on synthetic features: class means plus unit noise, so that accuracy means
something.

    python benchmarks/eval_scale.py                                # N 10k, 100k × D 512, 2048 × C 10, 1000
    python benchmarks/eval_scale.py --sizes 10k:512:10,1m:512:1000 --methods minibatch
    python benchmarks/eval_scale.py --extract 1,2                  # feature extraction, 1 and 2 processes

Each row runs in its own process (peak memory is that process's ``VmHWM`` from
``/proc/self/status``, the whole process: torch's allocations, numpy's and scikit-learn's), and is
printed as one JSON line as it finishes: size, method, test top-1, seconds (the protocol alone,
features already in memory) and peak RSS in MiB.  Test set: N / 10 rows (at most 10,000).  Both
probes fit the same objective at a fixed weight decay 1e-3 (scikit-learn ``C = 1 / (wd · N)``),
L-BFGS with at most ``--max-iter`` iterations; the kNN uses k = 200, T = 0.1 (scikit-learn:
cosine, brute force, ``weights="distance"``, so its accuracy is not ours: it is there for time).

``--extract P1,P2,...`` measures feature extraction instead
([`extract_features`][contrastive.evaluation.features.extract_features] as ``fit``, ``eval`` and ``embed``
run it): ``--extract-images`` synthetic uint8 images through a timm backbone (``--extract-backbone``,
``--extract-size`` px, batches of ``--batch-size``) under ``torchrun --nproc_per_node P`` for each
``P`` (gloo on the CPU, every process extracting its shard, the features gathered), one JSON row
each: processes, images, seconds (after a one-batch warm-up, a barrier before and after), images/s
and the torch threads of each process (the cores split between the processes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("knn", "lbfgs", "minibatch", "sklearn_knn", "sklearn_logreg")
DEFAULT_SIZES = "10k:512:10,10k:512:1000,10k:2048:10,10k:2048:1000,100k:512:10,100k:512:1000,100k:2048:10,100k:2048:1000"
WEIGHT_DECAY = 1e-3


def parse_sizes(text: str) -> list[tuple[int, int, int]]:
    """``"10k:512:10,1m:512:1000"`` -> ``[(10000, 512, 10), (1000000, 512, 1000)]`` (N:D:C)."""
    scale = {"k": 1_000, "m": 1_000_000}

    def number(word: str) -> int:
        word = word.strip().lower()
        return int(float(word[:-1]) * scale[word[-1]]) if word[-1] in scale else int(word)

    return [tuple(number(part) for part in item.split(":")) for item in text.split(",") if item.strip()]


def synthetic(n: int, d: int, c: int, seed: int = 0):
    """``n`` train and ``min(10_000, max(50, n // 10))`` test features of width ``d``: class means of
    norm ~2 plus unit Gaussian noise, labels uniform over ``c`` classes."""
    import torch

    g = torch.Generator().manual_seed(seed)
    means = torch.randn(c, d, generator=g) * (2.0 / d**0.5)
    n_test = min(10_000, max(50, n // 10))
    train_y, test_y = torch.randint(0, c, (n,), generator=g), torch.randint(0, c, (n_test,), generator=g)
    train_x = means[train_y] + torch.randn(n, d, generator=g)
    test_x = means[test_y] + torch.randn(n_test, d, generator=g)
    return train_x, train_y, test_x, test_y


def peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_row(n: int, d: int, c: int, method: str, max_iter: int) -> dict:
    """One method on one size, in this process: ``{n, d, c, method, top1, seconds, peak_rss_mib}``."""
    import numpy as np

    from contrastive.evaluation.knn import knn_classify
    from contrastive.evaluation.logistic import linear_probe

    train_x, train_y, test_x, test_y = synthetic(n, d, c)
    start = time.perf_counter()
    if method == "knn":
        top1 = knn_classify(train_x, train_y, test_x, test_y, num_classes=c, k=200, temperature=0.1)["top1"]
    elif method in ("lbfgs", "minibatch"):
        top1 = linear_probe(train_x, train_y, test_x, test_y, num_classes=c, weight_decay=WEIGHT_DECAY,
                            max_iter=max_iter, solver=method)["top1"]
    elif method == "sklearn_knn":
        from sklearn.neighbors import KNeighborsClassifier

        clf = KNeighborsClassifier(n_neighbors=min(200, n), metric="cosine", algorithm="brute", weights="distance")
        top1 = float(np.mean(clf.fit(train_x.numpy(), train_y.numpy()).predict(test_x.numpy()) == test_y.numpy()))
    elif method == "sklearn_logreg":
        from sklearn.linear_model import LogisticRegression

        mean, std = train_x.mean(0), train_x.std(0)
        clf = LogisticRegression(C=1.0 / (WEIGHT_DECAY * n), max_iter=max_iter, tol=1e-6)
        clf.fit(((train_x - mean) / std).numpy(), train_y.numpy())
        top1 = float(np.mean(clf.predict(((test_x - mean) / std).numpy()) == test_y.numpy()))
    else:
        raise ValueError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
    seconds = time.perf_counter() - start
    return {"n": n, "d": d, "c": c, "n_test": len(test_y), "method": method, "top1": top1,
            "seconds": round(seconds, 3), "peak_rss_mib": round(peak_rss_mib(), 1)}


class _SyntheticImages:
    """``n`` random uint8 ``(3, size, size)`` images with labels, made up front (no decoding cost)."""

    def __init__(self, n: int, size: int) -> None:
        import torch

        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
        self.labels = torch.randint(0, 10, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


def extract_row(images: int, size: int, backbone_name: str, batch_size: int) -> dict | None:
    """One extraction measurement in this (torchrun-started) process group; the row on rank 0."""
    import torch
    import torch.distributed as dist

    from contrastive.distributed import evaluation_group, join_launch, rank, world_size
    from contrastive.evaluation.features import EvalTransform, extract_features

    join_launch()
    world = world_size()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    import timm

    backbone = timm.create_model(backbone_name, pretrained=False, num_classes=0)
    data = _SyntheticImages(images, size)
    transform = EvalTransform(3, (size, size))
    group = evaluation_group(3600.0)
    extract_features(backbone, data, transform, batch_size=batch_size, indices=list(range(batch_size)))  # warm-up
    if group is not None:
        dist.barrier(group=group)
    start = time.perf_counter()
    feats, _ = extract_features(backbone, data, transform, batch_size=batch_size, group=group)
    if group is not None:
        dist.barrier(group=group)
    seconds = time.perf_counter() - start
    if rank() != 0:
        return None
    return {"extract": True, "processes": world, "threads_per_process": torch.get_num_threads(),
            "backbone": backbone_name, "size": size, "images": images, "features": list(feats.shape),
            "seconds": round(seconds, 3), "images_per_s": round(images / seconds, 1)}


def _have_sklearn() -> bool:
    import importlib.util

    return importlib.util.find_spec("sklearn") is not None


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="N:D:C,... (k and m suffixes)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--max-iter", type=int, default=100, help="L-BFGS iterations (ours and scikit-learn's)")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # N:D:C:METHOD, run here (the child of a row)
    parser.add_argument("--extract", help="measure feature extraction with these numbers of processes, e.g. 1,2")
    parser.add_argument("--extract-images", type=int, default=4096)
    parser.add_argument("--extract-size", type=int, default=64)
    parser.add_argument("--extract-backbone", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--extract-row", action="store_true", help=argparse.SUPPRESS)  # a torchrun child
    args = parser.parse_args(argv)
    if args.extract_row:
        row = extract_row(args.extract_images, args.extract_size, args.extract_backbone, args.batch_size)
        if row is not None:
            print(json.dumps(row), flush=True)
        return []
    if args.extract:
        return _extract_rows(args)
    if args.row:
        n, d, c, method = args.row.split(":")
        print(json.dumps(run_row(int(n), int(d), int(c), method, args.max_iter)), flush=True)
        return []
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if not _have_sklearn():
        methods = [m for m in methods if not m.startswith("sklearn")]
    rows = []
    for n, d, c in parse_sizes(args.sizes):
        for method in methods:
            child = subprocess.run([sys.executable, __file__, "--row", f"{n}:{d}:{c}:{method}", "--max-iter", str(args.max_iter)],
                                   capture_output=True, text=True)
            if child.returncode != 0:
                row = {"n": n, "d": d, "c": c, "method": method, "error": child.stderr.strip().splitlines()[-1:]}
            else:
                row = json.loads(child.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _extract_rows(args) -> list[dict]:
    rows = []
    for processes in [int(p) for p in args.extract.split(",") if p.strip()]:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                   "--master_port", str(29500 + processes), __file__, "--extract-row",
                   "--extract-images", str(args.extract_images), "--extract-size", str(args.extract_size),
                   "--extract-backbone", args.extract_backbone, "--batch-size", str(args.batch_size)]
        child = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
        if child.returncode != 0 or not lines:
            row = {"extract": True, "processes": processes, "error": child.stderr.strip().splitlines()[-3:]}
        else:
            row = json.loads(lines[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
