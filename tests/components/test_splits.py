"""contrastive.components.datasets.splits: the seeded (stratified) split, draw for draw scikit-learn's train_test_split."""

import math
from collections import Counter

import numpy as np
import pytest

from contrastive.components.datasets.splits import split_sizes, train_test_indices

CASES = [  # (labels or a sample count, test fraction)
    (np.repeat(np.arange(10), 180)[:1797], 0.25),  # digits-like
    (np.array([0] * 50 + [1] * 30 + [2] * 20), 0.1),
    (np.array([0] * 40 + [1] * 2), 0.5),  # imbalanced
    (np.array([-1] * 7 + [3] * 5 + [9] * 11 + [4] * 2), 0.3),  # unlabelled rows as one more class
    (np.array(list("abcabcabcaab")), 0.34),  # any label values
    (45, 0.1),
    (1000, 0.37),
]


def _case(case):
    return (len(case), case) if isinstance(case, np.ndarray) else (case, None)


@pytest.mark.parametrize("case, fraction", CASES)
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_the_split_is_scikit_learns_draw_for_draw(case, fraction, seed):
    model_selection = pytest.importorskip("sklearn.model_selection")
    n, labels = _case(case)
    train, test = train_test_indices(n, fraction, seed, labels)
    expected_train, expected_test = model_selection.train_test_split(
        np.arange(n), test_size=fraction, shuffle=True, stratify=labels, random_state=seed)
    np.testing.assert_array_equal(train, expected_train)
    np.testing.assert_array_equal(test, expected_test)


@pytest.mark.parametrize("case, fraction", CASES)
def test_the_split_is_seeded_disjoint_sized_and_stratified(case, fraction):
    n, labels = _case(case)
    train, test = train_test_indices(n, fraction, 0, labels)
    assert len(test) == math.ceil(fraction * n) and len(train) == n - len(test)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(n))
    again = train_test_indices(n, fraction, 0, labels)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)
    assert not np.array_equal(train_test_indices(n, fraction, 1, labels)[1], test)
    if labels is not None:  # each class within one sample of its share
        total, held = Counter(labels.tolist()), Counter(labels[test].tolist())
        assert all(abs(held[c] - fraction * k) <= 1 for c, k in total.items())


def test_impossible_splits_raise_value_error():
    assert split_sizes(10, 0.25) == (7, 3)
    for fraction in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="range"):
            split_sizes(10, fraction)
    with pytest.raises(ValueError, match="train set will be empty"):
        split_sizes(1, 0.5)
    with pytest.raises(ValueError, match="only 1 member"):
        train_test_indices(4, 0.5, 0, np.array([0, 0, 0, 1]))
    with pytest.raises(ValueError, match="at least the number of classes"):
        train_test_indices(12, 0.1, 0, np.array([0, 1, 2, 3] * 3))
