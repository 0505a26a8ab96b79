"""The label-free metrics against independent computations on known matrices."""

import math

import numpy as np
import pytest
import torch

import contrastive.evaluation.label_free as lf
from contrastive.evaluation.label_free import alignment, effective_rank, uniformity


def test_effective_rank_of_known_matrices():
    assert effective_rank(torch.eye(7)) == pytest.approx(7.0, rel=1e-5)  # equal singular values: n
    rank_one = torch.outer(torch.arange(1.0, 11.0), torch.tensor([1.0, -2.0, 0.5]))
    assert effective_rank(rank_one) == pytest.approx(1.0, abs=1e-4)
    # diag(3, 1): p = (0.75, 0.25), exp of the entropy by hand
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(torch.diag(torch.tensor([3.0, 1.0]))) == pytest.approx(expected, rel=1e-5)
    assert effective_rank(torch.zeros(4, 3)) == 0.0


def test_effective_rank_matches_numpy_svd():
    x = torch.randn(50, 12, generator=torch.Generator().manual_seed(0))
    s = np.linalg.svd(x.numpy().astype(np.float64), compute_uv=False)
    p = s / s.sum() + 1e-7
    assert effective_rank(x) == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-6)


def test_alignment_of_known_pairs():
    a = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    assert alignment(a, a * 5) == pytest.approx(0.0, abs=1e-12)  # L2-normalised first: scale does not matter
    assert alignment(a, a.flip(1)) == pytest.approx(2.0)  # orthogonal unit vectors: |a - b|^2 = 2
    assert alignment(a, -a, alpha=1) == pytest.approx(2.0)  # antipodal: |a - b| = 2
    with pytest.raises(ValueError):
        alignment(a, a[:1])


def test_uniformity_matches_a_pairwise_loop():
    z = torch.randn(9, 4, generator=torch.Generator().manual_seed(1))
    x = z.double().numpy()
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    terms = [math.exp(-2 * float(((x[i] - x[j]) ** 2).sum())) for i in range(9) for j in range(i + 1, 9)]
    assert uniformity(z) == pytest.approx(math.log(sum(terms) / len(terms)), rel=1e-9)
    assert uniformity(torch.ones(5, 3)) == pytest.approx(0.0, abs=1e-12)  # one point: no spread
    antipodal = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert uniformity(antipodal) == pytest.approx(-8.0)  # squared distance 4, t = 2
    with pytest.raises(ValueError):
        uniformity(z[:1])


def test_uniformity_in_chunks_equals_one_block(monkeypatch):
    z = torch.randn(30, 5, generator=torch.Generator().manual_seed(2))
    whole = uniformity(z)
    monkeypatch.setattr(lf, "UNIFORMITY_CHUNK_ELEMENTS", 30 * 4)  # 4 rows per chunk
    assert uniformity(z) == pytest.approx(whole, rel=1e-12)
