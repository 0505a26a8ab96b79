"""The linear probe: ours (torch L-BFGS, ``contrastive.evaluation.protocols``) against
scikit-learn's ``LogisticRegression(solver="lbfgs")`` on the same standardised features and the
same objective (mean cross-entropy + wd/2·‖W‖², bias not penalised: ``C = 1 / (wd · n)``).

    python benchmarks/linear_probe.py                 # digits 16 px and Fashion-MNIST raw pixels
    python benchmarks/linear_probe.py --data digits   # one of them

Prints, per data set, each probe's test top-1 and its wall time (one fit at a fixed weight
decay, and ours with ``weight_decay: auto``, its search included).  Needs scikit-learn.
"""

from __future__ import annotations

import argparse
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


def compare(name: str, data, weight_decay: float, max_iter: int):
    """Yield one line per probe as it finishes."""
    from sklearn.linear_model import LogisticRegression

    from contrastive.evaluation.protocols import linear_probe

    train_x, train_y, test_x, test_y = data
    for wd in (weight_decay, "auto"):
        start = time.perf_counter()
        ours = linear_probe(train_x, train_y, test_x, test_y, num_classes=10, weight_decay=wd, max_iter=max_iter)
        yield (f"{name:14s} ours     wd {ours['weight_decay']:<7g}{'(auto)' if wd == 'auto' else '      '}"
               f" top-1 {ours['top1']:.4f}  {time.perf_counter() - start:7.2f} s")
    from threadpoolctl import threadpool_limits

    sx, tx = _standardise(train_x, test_x)
    for threads in (1, None):  # ours runs small probes on one thread; sklearn's BLAS on one, then on all
        with threadpool_limits(limits=threads):
            start = time.perf_counter()
            clf = LogisticRegression(C=1.0 / (weight_decay * len(train_y)), max_iter=max_iter, tol=1e-6)
            clf.fit(sx.numpy(), train_y.numpy())
            top1 = float(np.mean(clf.predict(tx.numpy()) == test_y.numpy()))
            seconds = time.perf_counter() - start
        label = "1 thread" if threads == 1 else "all threads"
        yield (f"{name:14s} sklearn  wd {weight_decay:<7g}       top-1 {top1:.4f}  {seconds:7.2f} s  ({label},"
               f" {int(clf.n_iter_[0])} iterations)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=["digits", "fashion_mnist", "all"], default="all")
    parser.add_argument("--weight-decay", type=float, default=1e-3)
    parser.add_argument("--max-iter", type=int, default=500)
    args = parser.parse_args()
    sets = {"digits": _digits, "fashion_mnist": _fashion_mnist}
    for name, load in sets.items():
        if args.data in (name, "all"):
            for line in compare(name, load(), args.weight_decay, args.max_iter):
                print(line, flush=True)


if __name__ == "__main__":
    main()
