"""Retrieval scores of test queries against the train set, from the kNN's neighbours (no second
similarity pass): ``recall@1``, ``recall@5`` and ``map@r`` of Musgrave et al. (2020), "A Metric
Learning Reality Check".

- ``recall@k``: the share of queries with at least one of their ``k`` nearest train features of
  their own class (``recall@1`` is Musgrave's precision@1);
- ``map@r``: mean over queries of ``1/R · Σ_{i ≤ R} P(i)·rel(i)``, ``rel(i)`` whether the i-th
  neighbour has the query's class, ``P(i)`` the precision of the first i, and ``R`` the number of
  train samples of the query's class — capped at the ``k`` neighbours the kNN has found
  (``eval.knn_k``, 200 by default).  On data with at most ``k`` train samples per class it is
  Musgrave's mAP@R exactly; above, it is mAP@min(R, k), so larger data sets are scored at the
  same cost as the kNN (an exact R of 6,000 per class would need 30 times the neighbours).

Neighbours come in the kNN's order (similarity descending, then train index ascending), so equal
similarities are ranked the same way on one process or many."""

from __future__ import annotations

import torch


def retrieval_scores(neighbour_labels: torch.Tensor, test_y: torch.Tensor, class_counts: torch.Tensor) -> dict[str, float]:
    """``recall@1``, ``recall@5`` (with at least 5 neighbours) and ``map@r`` of queries labelled
    ``test_y`` ``(N,)`` whose ordered neighbours have labels ``neighbour_labels`` ``(N, k)``;
    ``class_counts`` ``(num_classes,)``: train samples per class (R before the cap at ``k``)."""
    labels, test_y = neighbour_labels, test_y.to(neighbour_labels.device)
    n, k = labels.shape
    relevant = labels == test_y[:, None]
    scores = {"recall@1": float(relevant[:, :1].any(1).float().mean())}
    if k >= 5:
        scores["recall@5"] = float(relevant[:, :5].any(1).float().mean())
    r = class_counts.to(labels.device)[test_y].clamp(max=k)
    rank = torch.arange(1, k + 1, device=labels.device)
    within = rank[None, :] <= r[:, None]
    precision = relevant.cumsum(1) / rank
    ap = (precision * (relevant & within)).sum(1) / r.clamp(min=1)
    scores["map@r"] = float(ap.where(r > 0, torch.zeros_like(ap)).mean()) if n else 0.0
    return scores
