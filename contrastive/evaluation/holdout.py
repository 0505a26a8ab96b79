"""The held-out split of data that has no test split of its own (an image folder, a Hugging Face
dataset): which images evaluation holds out (`split_indices`: stratified by class, seeded)
and a dataset restricted to some of its images (`subset`)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import torch

from contrastive.components.datasets.contract import DatasetView, dataset_info
from contrastive.components.datasets.splits import train_test_indices
from contrastive.errors import DataError

#: Fractions tried when a hold-out is too small for every class, to suggest one that works.
SUGGESTED_FRACTIONS = tuple(round(0.05 * k, 2) for k in range(1, 11))
OTHER_TEST_DATA = "or give labelled test data with --eval.test_data.name image_folder --eval.test_data.args.root PATH"


def _split(n: int, labels: np.ndarray | None, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    kept, held = train_test_indices(n, fraction, seed, labels)
    return np.sort(kept), np.sort(held)


def _missing_classes(labels: np.ndarray, part: np.ndarray) -> list[int]:
    present = set(labels[part].tolist())
    return sorted(c for c in set(labels.tolist()) if c >= 0 and c not in present)


def split_indices(
    labels: torch.Tensor, fraction: float, seed: int, *, what: str, classes: list[str] | None = None,
) -> tuple[list[int], list[int]]:
    """``(kept, held_out)``: sorted indices of the ``N`` samples, ``ceil(fraction · N)`` of them held
    out, drawn with ``seed``.  ``labels``: ``(N,)`` int64, −1 for no label.  With labels the split
    is stratified by class ([`contrastive.components.datasets.splits.train_test_indices`][contrastive.components.datasets.splits.train_test_indices], scikit-learn's
    ``train_test_split`` draw for draw) and every class must appear on
    both sides; all −1 (unlabelled data): a plain seeded random split.  ``what`` names the data in
    errors, ``classes`` its class names.  Raises [`DataError`][contrastive.errors.DataError] (one line, with the fix) when a
    side would be empty or miss a class."""
    n = len(labels)
    held_count = math.ceil(fraction * n)
    if n < 2 or held_count >= n:
        raise DataError(
            f"eval.holdout {fraction:g} of the {n} image(s) of {what} leaves no images on one side of the "
            f"evaluation split (held out {min(held_count, n)}, kept {max(n - held_count, 0)}); add images, "
            f"lower eval.holdout, {OTHER_TEST_DATA}"
        )
    y = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if not (y >= 0).any():
        kept, held = _split(n, None, fraction, seed)
        return kept.tolist(), held.tolist()

    def name(c: int) -> str:
        return f"'{classes[c]}'" if classes and 0 <= c < len(classes) else str(c)

    counts = Counter(int(c) for c in y.tolist() if c >= 0)
    alone = sorted(c for c, k in counts.items() if k < 2)
    if alone:
        listed = ", ".join(name(c) for c in alone[:5]) + (f" and {len(alone) - 5} more" if len(alone) > 5 else "")
        which = f"class {listed} of {what} has only 1 image" if len(alone) == 1 else \
            f"classes {listed} of {what} have only 1 image each"
        raise DataError(
            f"{which}; holding out a stratified eval.holdout split needs at least 2 "
            f"per class (one held out, one kept): add images, {OTHER_TEST_DATA}"
        )

    def split_or_none(f: float):
        if math.ceil(f * n) >= n:
            return None
        try:
            kept, held = _split(n, y, f, seed)
        except ValueError:  # fewer held-out images than classes
            return None
        return None if _missing_classes(y, held) or _missing_classes(y, kept) else (kept, held)

    found = split_or_none(fraction)
    if found is None:
        better = next((f for f in SUGGESTED_FRACTIONS if f > fraction and split_or_none(f) is not None), None)
        fix = f"raise it with --eval.holdout {better:g}, " if better is not None else ""
        raise DataError(
            f"eval.holdout {fraction:g} holds out {held_count} of the {n} images of {what}, too few for each of its "
            f"{len(counts)} classes to have a held-out image; {fix}add images, {OTHER_TEST_DATA}"
        )
    return found[0].tolist(), found[1].tolist()


class IndexSubset(DatasetView):
    """The samples ``indices`` of ``dataset``, in that order.  What holds of the images one by one
    is forwarded (``classes``, ``has_labels``, ``num_channels``, ``image_size``, ``labels_hint``,
    ``whole_image``, and the bad-file bookkeeping ``skipped_files`` / ``reading_now``); what is
    indexed by image (``labels``, ``paths``, ``load_item``) is restricted to ``indices``."""

    forwarded = frozenset({"classes", "has_labels", "num_channels", "image_size", "labels_hint", "whole_image",
                           "skipped_files", "reading_now"})

    def __init__(self, dataset: Any, indices: list[int]) -> None:
        super().__init__(dataset)
        self.indices = list(indices)
        info = dataset_info(dataset)
        if info.labels is None:
            labels = [dataset[i][1] for i in self.indices]
        else:
            labels = torch.as_tensor(info.labels)[self.indices]
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        if info.paths is not None:
            self.paths = [info.paths[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[self.indices[index]]

    def load_item(self, index: int):
        return self.dataset.load_item(self.indices[index])

    def __repr__(self) -> str:
        return f"{len(self)} of {self.dataset!r}"


def subset(dataset: Any, indices: list[int]) -> Any:
    """``dataset`` restricted to ``indices``: its own ``subset(indices)`` when it has one
    (``image_folder``: a bad file is then replaced by the next readable image *of the subset*),
    else an `IndexSubset`."""
    own = dataset_info(dataset).subset
    return own(indices) if own is not None else IndexSubset(dataset, indices)
