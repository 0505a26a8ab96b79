"""Sinkhorn-Knopp over the global batch: SwAV's equipartitioned soft cluster assignments (codes).

Caron et al. 2020 (arXiv:2006.09882, Sec. 3.1 and Appendix A).  Given the scores ``S`` ``(B, K)`` of
B samples against K prototypes (cosines ``z · c_k``), the codes Q maximise ``Tr(Qᵀ S) + ε H(Q)``
over the transportation polytope — every prototype gets 1/K of the batch, every sample a unit of
mass::

    Q ∈ R₊^{B×K},   Σ_b Q_bk = 1/K  for every prototype k,   Σ_k Q_bk = 1/B  for every sample b

The solution is ``Diag(u) exp(S / ε) Diag(v)``; Sinkhorn-Knopp finds u and v by normalising, in
turn, the prototypes' sums (over the samples) and the samples' sums (over the prototypes) of
``exp(S / ε)``, ``iterations`` times (3 in the paper, ε = 0.05).  The codes returned are
``B · Q``: each sample's row sums to 1 (a distribution over the prototypes), the last step being
the samples' normalisation, as in the official ``distributed_sinkhorn``.

The global batch.  The prototypes' sums run over every sample of every process: each process
holds its own rows, and the sums of each iteration (a K-vector), the total mass and the number of
rows are all-reduced, as the official code does — so W processes of n rows each compute the
codes one process computes on all W·n rows, at the cost of one K-vector all-reduce per
iteration (gathering the scores instead would move W·n·K numbers).  The samples' normalisation is
per row and needs nothing from the others.  Any row is a sample to the algorithm: SwAV's queue
adds rows — each process passes the rows it contributes (its batch and its share of the queue),
and B is their total over processes, so processes may contribute different numbers of rows.

Numerics.  ``exp(S / ε)`` of a cosine at ε = 0.05 reaches e²⁰; the scores are shifted by their
global maximum first (one more all-reduce, of a scalar), which the normalisations cancel exactly,
so a smaller ε cannot overflow.  A prototype's sum that underflows to 0 is left at 0 instead of
dividing by it.  Float32 (float64 kept), autocast off, no gradient.

Why not lightly's ``sinkhorn``: it takes ``B`` = this process's rows × the number of processes,
which a queue shared by every process (and split among them here) breaks, and it exponentiates
without the shift; it is the independent implementation the tests compare with.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from contrastive.distributed import is_distributed


def _all_reduce(tensor: Tensor, op: dist.ReduceOp = dist.ReduceOp.SUM) -> Tensor:
    """``tensor`` reduced over every process in place (nothing to do on one process)."""
    if is_distributed():
        dist.all_reduce(tensor, op=op)
    return tensor


@torch.no_grad()
def sinkhorn_knopp(scores: Tensor, epsilon: float = 0.05, iterations: int = 3) -> Tensor:
    """The codes of this process's rows of the global Sinkhorn-Knopp problem.

    Args:
        scores: ``(n, K)`` this process's rows (samples) of scores against the K prototypes; n
            may differ between processes (and be 0).
        epsilon: ε > 0, the entropy weight (smaller: harder assignments).
        iterations: Sinkhorn-Knopp iterations (each: prototypes' sums, then samples' sums).

    Returns:
        ``(n, K)`` codes in the dtype of the computation (float32, or float64 for float64
        scores), each row summing to 1.  Collective under torch.distributed: every process must call it.
    """
    dtype = torch.promote_types(scores.dtype, torch.float32)
    with torch.autocast(device_type=scores.device.type, enabled=False):
        s = scores.detach().to(dtype)
        lowest = torch.full((1,), torch.finfo(dtype).min, dtype=dtype, device=s.device)
        shift = _all_reduce(s.max().reshape(1) if s.numel() else lowest, dist.ReduceOp.MAX)
        q = torch.exp((s - shift) / epsilon)  # (n, K)
        mass = _all_reduce(torch.stack([q.sum(), torch.tensor(float(q.shape[0]), dtype=dtype, device=q.device)]))
        q /= mass[0]
        rows, prototypes = mass[1], q.shape[1]
        tiny = torch.finfo(dtype).tiny
        for _ in range(iterations):
            per_prototype = _all_reduce(q.sum(dim=0, keepdim=True))  # (1, K) over every row of every process
            q /= per_prototype.clamp_min(tiny)
            q /= prototypes
            q /= q.sum(dim=1, keepdim=True).clamp_min(tiny)
            q /= rows
        return q * rows
