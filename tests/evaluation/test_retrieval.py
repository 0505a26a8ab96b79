"""Retrieval scores (recall@1, recall@5, mAP@R) of the kNN's neighbours against a written-out
numpy implementation of Musgrave et al. (2020), ties included."""

import numpy as np
import pytest
import torch

from contrastive.evaluation.knn import knn_candidates
from contrastive.evaluation.retrieval import retrieval_scores


def brute_force(train_x, train_y, test_x, test_y, k):
    """Every test query against every train feature, sorted by (-cosine, index), R = min(class size, k)."""
    train = train_x.astype(np.float64) / np.linalg.norm(train_x.astype(np.float64), axis=1, keepdims=True)
    test = test_x.astype(np.float64) / np.linalg.norm(test_x.astype(np.float64), axis=1, keepdims=True)
    similarities = (test @ train.T).astype(np.float32)  # as the kNN: float64 products rounded to float32
    recall1, recall5, aps = [], [], []
    for q in range(len(test)):
        sim = similarities[q]
        order = np.lexsort((np.arange(len(train)), -sim))
        relevant = train_y[order] == test_y[q]
        recall1.append(relevant[:1].any())
        recall5.append(relevant[:5].any())
        r = min(int((train_y == test_y[q]).sum()), k)
        if r == 0:
            aps.append(0.0)
            continue
        total = 0.0
        for i in range(r):
            if relevant[i]:
                total += relevant[: i + 1].sum() / (i + 1)
        aps.append(total / r)
    return {"recall@1": np.mean(recall1), "recall@5": np.mean(recall5), "map@r": np.mean(aps)}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [6, 40])  # 6: R capped below the class sizes; 40: R is the class size
def test_scores_match_the_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((15, 4)).astype(np.float32)
    train_x = base[rng.integers(0, 15, 60)]  # duplicates: equal similarities with different labels
    train_y = rng.integers(0, 4, 60)
    test_x = np.concatenate([base[:8], rng.standard_normal((12, 4)).astype(np.float32)])
    test_y = rng.integers(0, 5, 20)  # class 4 has no train samples: R = 0 scores 0
    _, _, labels = knn_candidates(torch.from_numpy(train_x), torch.from_numpy(train_y), torch.from_numpy(test_x), k=k)
    counts = torch.bincount(torch.from_numpy(train_y), minlength=5)
    got = retrieval_scores(labels, torch.from_numpy(test_y), counts)
    want = brute_force(train_x, train_y, test_x, test_y, k)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key


def test_perfect_retrieval_scores_one():
    labels = torch.tensor([[0, 0, 1], [1, 1, 0]])
    scores = retrieval_scores(labels, torch.tensor([0, 1]), torch.tensor([2, 2]))
    assert scores == {"recall@1": 1.0, "map@r": 1.0}  # fewer than 5 neighbours: no recall@5
