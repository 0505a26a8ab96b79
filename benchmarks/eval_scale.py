"""The evaluation protocols against the size of the data: time and peak memory of the kNN
(``contrastive.evaluation.knn``) and of each linear probe solver (full-batch L-BFGS, mini-batch),
beside scikit-learn's ``KNeighborsClassifier`` and ``LogisticRegression`` where it is installed
(the ``bench`` extra), on synthetic features: class means plus unit noise, so that accuracy means
something.

    python benchmarks/eval_scale.py                                # N 10k, 100k × D 512, 2048 × C 10, 1000
    python benchmarks/eval_scale.py --sizes 10k:512:10,1m:512:1000 --methods minibatch

Each row runs in its own process (peak memory is that process's ``VmHWM`` from
``/proc/self/status``, the whole process: torch's allocations, numpy's and scikit-learn's), and is
printed as one JSON line as it finishes: size, method, test top-1, seconds (the protocol alone,
features already in memory) and peak RSS in MiB.  Test set: N / 10 rows (at most 10,000).  Both
probes fit the same objective at a fixed weight decay 1e-3 (scikit-learn ``C = 1 / (wd · N)``),
L-BFGS with at most ``--max-iter`` iterations; the kNN uses k = 200, T = 0.1 (scikit-learn:
cosine, brute force, ``weights="distance"``, so its accuracy is not ours: it is there for time).
"""

from __future__ import annotations

import argparse
import json
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


def _have_sklearn() -> bool:
    import importlib.util

    return importlib.util.find_spec("sklearn") is not None


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="N:D:C,... (k and m suffixes)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--max-iter", type=int, default=100, help="L-BFGS iterations (ours and scikit-learn's)")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # N:D:C:METHOD, run here (the child of a row)
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    main()
