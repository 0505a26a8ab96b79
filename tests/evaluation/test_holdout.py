"""The held-out split (stratified, seeded, every class on both sides) and dataset subsets."""

from collections import Counter

import pytest
import torch

from contrastive.components.datasets import TensorImageDataset
from contrastive.errors import DataError
from contrastive.evaluation.holdout import IndexSubset, split_indices, subset


def test_stratified_split_is_seeded_disjoint_and_proportional():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    kept, held = split_indices(labels, 0.1, seed=0, what="data")
    assert sorted(kept + held) == list(range(100)) and not set(kept) & set(held)
    assert kept == sorted(kept) and held == sorted(held)
    assert Counter(labels[held].tolist()) == {0: 5, 1: 3, 2: 2}  # 10% of each class
    assert split_indices(labels, 0.1, seed=0, what="data") == (kept, held)
    assert split_indices(labels, 0.1, seed=1, what="data")[1] != held


def test_unlabelled_split_is_random_and_ceil_sized():
    kept, held = split_indices(torch.full((45,), -1), 0.1, seed=3, what="data")
    assert len(held) == 5 and len(kept) == 40  # ceil(4.5)
    assert held != list(range(40, 45))


@pytest.mark.parametrize(
    "labels, fraction, message",
    [
        (torch.full((1,), -1), 0.1, "leaves no images on one side"),
        (torch.full((2,), -1), 0.9, "leaves no images on one side"),
        (torch.tensor([0, 0, 0, 1]), 0.5, "class 'b' of data has only 1 image"),
        (torch.tensor([0, 1, 2, 3] * 3), 0.1, r"holds out 2 of the 12 images of data, too few for each of its 4 classes.*--eval.holdout 0.3"),
    ],
)
def test_split_errors_name_the_problem_and_the_fix(labels, fraction, message):
    with pytest.raises(DataError, match=message) as info:
        split_indices(labels, fraction, seed=0, what="data", classes=["a", "b", "c", "d"])
    assert "\n" not in str(info.value)


def test_imbalanced_classes_get_a_held_out_image_or_an_error():
    labels = torch.tensor([0] * 40 + [1] * 2)  # class 1 is 5% of the data
    kept, held = split_indices(labels, 0.5, seed=0, what="data")
    assert set(labels[held].tolist()) == {0, 1} and set(labels[kept].tolist()) == {0, 1}
    with pytest.raises(DataError, match="too few for each of its 2 classes"):
        split_indices(labels, 0.05, seed=0, what="data")


def test_index_subset_keeps_what_evaluation_reads():
    images = torch.arange(5 * 3 * 2 * 2, dtype=torch.uint8).reshape(5, 3, 2, 2)
    base = TensorImageDataset(images, torch.tensor([0, 1, 0, 1, 1]), ["x", "y"])
    part = subset(base, [4, 1])
    assert isinstance(part, IndexSubset) and len(part) == 2
    assert part.labels.tolist() == [1, 1] and part.classes == ["x", "y"] and part.has_labels
    assert part.num_channels == 3 and torch.equal(part[0][0], images[4])


def test_the_split_needs_no_scikit_learn(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if it were not installed
    kept, held = split_indices(torch.tensor([0] * 50 + [1] * 30 + [2] * 20), 0.1, seed=0, what="data")
    assert (len(kept), len(held)) == (90, 10)
