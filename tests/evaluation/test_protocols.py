"""kNN and the linear probe on synthetic features with known answers."""

import torch

from contrastive.evaluation.protocols import knn_classify, linear_probe


def clusters(n_per_class: int, num_classes: int = 10, dim: int = 32, spread: float = 0.05, seed: int = 0):
    """Points around ``num_classes`` random unit centres: well separated for a small spread."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(num_classes, dim, generator=g), dim=1)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    points = centres[labels] + spread * torch.randn(len(labels), dim, generator=g)
    perm = torch.randperm(len(labels), generator=g)
    return points[perm], labels[perm]


def split(x, y, n_train):
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def test_knn_separated_clusters_is_perfect():
    tr_x, tr_y, te_x, te_y = split(*clusters(60), 400)
    scores = knn_classify(tr_x, tr_y, te_x, te_y, num_classes=10, k=200, temperature=0.1)
    assert scores["top1"] == 1.0 and scores["top5"] == 1.0


def test_knn_shuffled_labels_is_chance():
    """Labels that carry no information about the features: accuracy ~ 1/10."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3000, 32, generator=g), torch.randint(0, 10, (3000,), generator=g)
    top1 = knn_classify(x[:2000], y[:2000], x[2000:], y[2000:], num_classes=10)["top1"]
    assert abs(top1 - 0.1) < 0.04


def test_knn_k_is_clamped_and_chunks_agree(monkeypatch):
    tr_x, tr_y, te_x, te_y = split(*clusters(5, spread=0.8), 30)
    full = knn_classify(tr_x, tr_y, te_x, te_y, num_classes=10, k=200)  # k > 30 train points
    import contrastive.evaluation.knn as knn

    monkeypatch.setattr(knn, "KNN_CHUNK_ELEMENTS", 30 * 3)  # 3 test rows per chunk
    assert knn_classify(tr_x, tr_y, te_x, te_y, num_classes=10, k=200) == full


def test_linear_probe_known_answers():
    tr_x, tr_y, te_x, te_y = split(*clusters(60), 400)
    scores = linear_probe(tr_x, tr_y, te_x, te_y, num_classes=10, max_iter=200)
    assert scores["top1"] == 1.0 and scores["weight_decay"] > 0
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(1500, 32, generator=g), torch.randint(0, 10, (1500,), generator=g)
    chance = linear_probe(x[:1000], y[:1000], x[1000:], y[1000:], num_classes=10, max_iter=200)["top1"]
    assert abs(chance - 0.1) < 0.05
    fixed = linear_probe(tr_x, tr_y, te_x, te_y, num_classes=10, max_iter=50, weight_decay=0.0)
    assert set(fixed) == {"top1", "top5", "weight_decay"} and fixed["weight_decay"] == 0.0


def test_no_top5_for_few_classes():
    tr_x, tr_y, te_x, te_y = split(*clusters(40, num_classes=4), 120)
    assert set(knn_classify(tr_x, tr_y, te_x, te_y, num_classes=4)) == {"top1"}
