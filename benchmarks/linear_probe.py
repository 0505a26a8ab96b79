"""The linear probe: ours (torch L-BFGS, ``contrastive.evaluation.protocols``) against
scikit-learn's ``LogisticRegression(solver="lbfgs")`` on the same standardised features and the
same objective (mean cross-entropy + wd/2·‖W‖², bias not penalised: ``C = 1 / (wd · n)``).

    python benchmarks/linear_probe.py                 # digits 16 px and Fashion-MNIST raw pixels
    python benchmarks/linear_probe.py --data digits   # one of them

Prints, per data set, each probe's test top-1 and its wall time (one fit at a fixed weight
decay, and ours with ``weight_decay: auto``, its search included) as it finishes, then one JSON
object with every row and the ratios sklearn seconds / ours seconds at the fixed weight decay.
Both sides are warmed up first: the first torch optimizer a process builds imports
``torch._dynamo`` (1-2 s, paid once by every ``contrastive fit`` or ``eval``).  Needs scikit-learn.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def _digits() -> tuple[torch.Tensor, ...]:
    from contrastive.components.datasets import DigitsDataset

    train, test = DigitsDataset(train=True, image_size=16), DigitsDataset(train=False, image_size=16)
    return train.images.flatten(1).float(), train.labels, test.images.flatten(1).float(), test.labels


def _fashion_mnist() -> tuple[torch.Tensor, ...]:
    from contrastive.components.datasets import FashionMNISTDataset

    train, test = FashionMNISTDataset(train=True), FashionMNISTDataset(train=False)
    return train.images.flatten(1).float(), train.labels, test.images.flatten(1).float(), test.labels


def _standardise(train_x: torch.Tensor, test_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = train_x.mean(0), train_x.std(0)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return (train_x - mean) / std, (test_x - mean) / std


def _warm_up() -> None:
    """One tiny fit each, so that neither side's timings include a one-off import."""
    from sklearn.linear_model import LogisticRegression

    from contrastive.evaluation.protocols import linear_probe

    x, y = torch.randn(40, 8, generator=torch.Generator().manual_seed(0)), torch.arange(40) % 4
    linear_probe(x, y, x, y, num_classes=4, weight_decay=1e-3, max_iter=5)
    LogisticRegression(max_iter=5).fit(x.numpy(), y.numpy())


def compare(name: str, data, weight_decay: float, max_iter: int):
    """Yield one row (a dict) per probe as it finishes."""
    from sklearn.linear_model import LogisticRegression

    from contrastive.evaluation.protocols import linear_probe

    train_x, train_y, test_x, test_y = data
    for wd in (weight_decay, "auto"):
        start = time.perf_counter()
        ours = linear_probe(train_x, train_y, test_x, test_y, num_classes=10, weight_decay=wd, max_iter=max_iter)
        yield {"data": name, "probe": "ours", "weight_decay": ours["weight_decay"], "auto": wd == "auto",
               "top1": ours["top1"], "seconds": time.perf_counter() - start}
    from threadpoolctl import threadpool_limits

    sx, tx = _standardise(train_x, test_x)
    for threads in (1, None):  # ours runs small probes on one thread; sklearn's BLAS on one, then on all
        with threadpool_limits(limits=threads):
            start = time.perf_counter()
            clf = LogisticRegression(C=1.0 / (weight_decay * len(train_y)), max_iter=max_iter, tol=1e-6)
            clf.fit(sx.numpy(), train_y.numpy())
            top1 = float(np.mean(clf.predict(tx.numpy()) == test_y.numpy()))
            seconds = time.perf_counter() - start
        yield {"data": name, "probe": "sklearn", "weight_decay": weight_decay, "auto": False, "top1": top1,
               "seconds": seconds, "threads": "1" if threads == 1 else "all", "iterations": int(clf.n_iter_[0])}


def _line(row: dict) -> str:
    extra = f"  ({row['threads']} thread(s), {row['iterations']} iterations)" if row["probe"] == "sklearn" else ""
    return (f"{row['data']:14s} {row['probe']:8s} wd {row['weight_decay']:<7g}{'(auto)' if row['auto'] else '      '}"
            f" top-1 {row['top1']:.4f}  {row['seconds']:7.2f} s{extra}")


def _ratios(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per data set: sklearn's seconds over ours at the fixed weight decay (> 1: ours is faster)."""
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(row["data"] for row in rows):
        ours = next(r["seconds"] for r in rows if r["data"] == name and r["probe"] == "ours" and not r["auto"])
        for r in rows:
            if r["data"] == name and r["probe"] == "sklearn":
                out.setdefault(name, {})[f"sklearn_{r['threads']}_threads_over_ours"] = r["seconds"] / ours
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=["digits", "fashion_mnist", "all"], default="all")
    parser.add_argument("--weight-decay", type=float, default=1e-3)
    parser.add_argument("--max-iter", type=int, default=500)
    args = parser.parse_args()
    sets = {"digits": _digits, "fashion_mnist": _fashion_mnist}
    _warm_up()
    rows = []
    for name, load in sets.items():
        if args.data in (name, "all"):
            for row in compare(name, load(), args.weight_decay, args.max_iter):
                rows.append(row)
                print(_line(row), flush=True)
    print(json.dumps({"rows": rows, "ratios": _ratios(rows), "torch_threads": torch.get_num_threads()}, indent=2))

if __name__ == "__main__":
    main()
