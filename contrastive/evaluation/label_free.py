"""Label-free measures of a representation, tensors in and floats out: [`alignment`][contrastive.evaluation.label_free.alignment],
[`uniformity`][contrastive.evaluation.label_free.uniformity] (Wang & Isola 2020, arXiv:2005.10242) and [`effective_rank`][contrastive.evaluation.label_free.effective_rank] (RankMe,
Garrido et al. 2023, arXiv:2210.02885).  They need no labels, so they score a backbone trained
on a folder of unlabelled images.  Nothing here knows about recipes, registries or datasets.

How evaluation uses them ([`contrastive.evaluation.scoring.evaluate`][contrastive.evaluation.scoring.evaluate], protocol
``label_free``): ``alignment`` on the frozen features of two augmented views of every evaluation
test image (the recipe's first view pipeline); ``uniformity`` and ``effective_rank`` on the frozen
features of the test images themselves (centre crop, no augmentation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Rows of the (N × N) pairwise matrix [`uniformity`][contrastive.evaluation.label_free.uniformity] holds at once, bounded to ~64 MiB.
UNIFORMITY_CHUNK_ELEMENTS = 2**24


def alignment(z_a: torch.Tensor, z_b: torch.Tensor, alpha: float = 2.0) -> float:
    """Mean ``‖f(x) − f(y)‖₂^alpha`` over positive pairs, on L2-normalised rows (lower: views of one
    image lie closer).  ``z_a``, ``z_b``: ``(N, D)``, row i of each two views of sample i.  In
    [0, 2^alpha]: 0 when every pair coincides, 2 (alpha = 2) for orthogonal pairs."""
    if z_a.shape != z_b.shape or z_a.ndim != 2 or z_a.shape[0] == 0:
        raise ValueError(f"alignment needs two (N, D) tensors of one shape, N >= 1; got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    a, b = F.normalize(z_a.double(), dim=1), F.normalize(z_b.double(), dim=1)
    return float((a - b).norm(dim=1).pow(alpha).mean())


def uniformity(z: torch.Tensor, t: float = 2.0) -> float:
    """``log mean_{i<j} exp(−t ‖z_i − z_j‖₂²)`` over all pairs of L2-normalised rows of ``z``
    ``(N, D)``, N >= 2 (lower: features spread more evenly over the sphere).  0 when every row is
    the same point, never below ``−4t`` (squared distances of unit vectors are at most 4), near
    ``−2t`` for many points spread evenly over a high-dimensional sphere.  Computed exactly, in
    chunks of rows of bounded memory."""
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"uniformity needs an (N, D) tensor with N >= 2, got {tuple(z.shape)}")
    x = F.normalize(z.double(), dim=1)
    n = x.shape[0]
    rows = max(1, UNIFORMITY_CHUNK_ELEMENTS // n)
    parts = []
    for start in range(0, n, rows):
        block = x[start : start + rows]
        sq = (2.0 - 2.0 * block @ x.T).clamp_(min=0.0)  # ‖a − b‖² of unit vectors
        logits = -t * sq
        idx = torch.arange(block.shape[0])
        logits[idx, idx + start] = -math.inf  # i != j; the mean over i != j equals the mean over i < j
        parts.append(torch.logsumexp(logits.flatten(), dim=0))
    return float(torch.logsumexp(torch.stack(parts), dim=0) - math.log(n * (n - 1)))


def effective_rank(z: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe: ``exp(−Σ_k p_k log p_k)`` with ``p_k = σ_k / Σ σ + eps``, the σ_k being the singular
    values of the feature matrix ``z`` ``(N, D)`` as it is (not centred, not normalised).  Between
    1 (all rows on one line) and ``min(N, D)`` (equal singular values, e.g. orthonormal rows); a
    collapsed representation scores near 1."""
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"effective_rank needs an (N, D) tensor with N >= 1, got {tuple(z.shape)}")
    sigma = torch.linalg.svdvals(z.double())
    total = sigma.sum()
    if total <= 0:
        return 0.0  # all-zero features: no direction at all
    p = sigma / total + eps
    return float(torch.exp(-(p * p.log()).sum()))
