"""Seeded train/test index splits: stratified by class, or plain random.

[`train_test_indices`][contrastive.components.datasets.splits.train_test_indices] draws exactly what scikit-learn's
``train_test_split(np.arange(n), test_size=fraction, shuffle=True, stratify=labels,
random_state=seed)`` draws (its ``StratifiedShuffleSplit`` / ``ShuffleSplit`` with the
``_approximate_mode`` class allocation, on a ``numpy.random.RandomState(seed)``), so the
``digits`` split and the ``eval.holdout`` split of every earlier run stay the same while
scikit-learn and scipy (about 200 MB) are no longer needed to train or evaluate.  The algorithm
is scikit-learn's (BSD-3-Clause, the scikit-learn developers), re-written here for that reason;
``tests/test_splits.py`` holds it to scikit-learn's output where scikit-learn is installed.
"""

from __future__ import annotations

import math

import numpy as np


def split_sizes(n: int, test_fraction: float) -> tuple[int, int]:
    """``(n_train, n_test)`` of ``n`` samples: ``ceil(test_fraction · n)`` held out, the rest
    kept.  Raises ``ValueError`` unless ``0 < test_fraction < 1`` and both sides are non-empty."""
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_size={test_fraction} should be a float in the (0, 1) range")
    n_test = math.ceil(float(test_fraction) * n)
    n_train = n - n_test
    if n_train <= 0:
        raise ValueError(f"with n_samples={n} and test_size={test_fraction}, the resulting train set will be empty")
    return n_train, n_test


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of ``n_draws`` to take from each class: proportional, floored, then the rest
    given by largest remainder, ties broken at random (scikit-learn's ``_approximate_mode``)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def train_test_indices(n: int, test_fraction: float, seed: int,
                       labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)``: int64 index arrays of ``n`` samples in drawn order (not sorted),
    ``split_sizes(n, test_fraction)`` long.  With ``labels`` (``(n,)``, any values; each distinct
    value is a class) every class is split in proportion; without, a seeded permutation is cut.
    Raises ``ValueError`` when a class has fewer than 2 samples or a side has fewer samples than
    there are classes."""
    n_train, n_test = split_sizes(n, test_fraction)
    rng = np.random.RandomState(seed)
    if labels is None:
        permutation = rng.permutation(n)
        return permutation[n_test : n_test + n_train], permutation[:n_test]
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels of shape {labels.shape} for {n} samples")
    classes, class_of, class_counts = np.unique(labels, return_inverse=True, return_counts=True)
    if class_counts.min() < 2:
        raise ValueError(f"the least populated classes have only 1 member: {classes[class_counts < 2].tolist()}")
    if n_train < len(classes) or n_test < len(classes):
        raise ValueError(f"train size {n_train} and test size {n_test} should each be at least the "
                         f"number of classes, {len(classes)}")
    members = np.split(np.argsort(class_of, kind="stable"), np.cumsum(class_counts)[:-1])
    train_counts = _approximate_mode(class_counts, n_train, rng)
    test_counts = _approximate_mode(class_counts - train_counts, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        drawn = members[i][rng.permutation(class_counts[i])]
        train.extend(drawn[: train_counts[i]])
        test.extend(drawn[train_counts[i] : train_counts[i] + test_counts[i]])
    return rng.permutation(np.asarray(train, dtype=np.int64)), rng.permutation(np.asarray(test, dtype=np.int64))
