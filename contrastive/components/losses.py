"""Contrastive losses.

``ntxent``: the normalised temperature-scaled cross entropy of SimCLR (Chen et al., 2020,
arXiv:2002.05709, eq. 1).  For a batch of N samples with two views each, every one of the 2N
views is an anchor; its positive is the other view of the same sample and its negatives are
the remaining 2N − 2 views:

    l(i, j) = −log  exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ),   sim = cosine,

averaged over all 2N anchors.  When torch.distributed runs with several processes, the
negatives come from every process (gathered *with* gradient, see
:mod:`contrastive.distributed`); each rank computes only its own 2n rows against the 2N global
columns, so the loss averaged over ranks equals the single-process loss on the global batch.

Large batches are *tiled* (:class:`_TiledLogSumExp`): the 2n × 2N similarity matrix is never
held whole; blocks of rows are processed one after another, so the extra memory is
O(block × 2N + N × D) instead of O(n × N).  See docs/distributed.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from contrastive import hookimpl
from contrastive.distributed import gather_with_grad, rank, world_size
from contrastive.errors import InvalidArgumentsError


def positive_pair_logits(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarity logits of this rank's anchors against every view of the global batch.

    Args:
        z_a, z_b: ``(n, D)`` embeddings of the two views of this rank's n samples.
    Returns:
        ``logits`` ``(2n, 2N)`` float32 (float64 for float64 inputs) with each anchor's
        self-similarity set to −inf, and ``targets`` ``(2n,)`` holding the column of each
        anchor's positive.
    """
    local, columns = _normalized_rows_and_columns(z_a, z_b)
    logits = local @ columns.T / temperature
    self_columns, targets = _self_and_positive_columns(z_a.shape[0], columns.shape[0] // 2, z_a.device)
    rows = torch.arange(local.shape[0], device=z_a.device)
    logits[rows, self_columns] = float("-inf")
    return logits, targets


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types (bf16/fp16 autocast outputs), float64 kept as is."""
    return torch.promote_types(dtype, torch.float32)


def _normalized_rows_and_columns(z_a: torch.Tensor, z_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's unit-norm anchors ``(2n, D)`` and the global unit-norm views ``(2N, D)``
    (all first views of every rank, then all second views), gathered with gradient."""
    dtype = _compute_dtype(z_a.dtype)
    norm_a = F.normalize(z_a.to(dtype), dim=1)
    norm_b = F.normalize(z_b.to(dtype), dim=1)
    local = torch.cat([norm_a, norm_b])
    columns = torch.cat([gather_with_grad(norm_a), gather_with_grad(norm_b)])
    return local, columns


def _self_and_positive_columns(n: int, global_n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Column of each local anchor's own view and of its positive among the 2N global views."""
    idx = torch.arange(n, device=device) + rank() * n
    return torch.cat([idx, idx + global_n]), torch.cat([idx + global_n, idx])


class _TiledLogSumExp(torch.autograd.Function):
    """``Σ_i logsumexp_{k ≠ self(i)} (rows_i · columns_k / τ)`` over row blocks, never holding the
    whole ``(R, C)`` similarity matrix.

    The output is a scalar, so the gradient of the whole sum is known up to the incoming scalar
    factor while each block's softmax is at hand: the forward pass accumulates
    ``d/d rows = P @ columns / τ`` and ``d/d columns = Pᵀ @ rows / τ`` block by block (P the
    row-softmax of the block) and the backward pass only scales them.  That is the same memory
    as recomputing the similarities in backward, O(block × C + (R + C) × D), and one matrix
    product per block less.  Log-sum-exp is taken with the row maximum in ≥ float32.
    """

    @staticmethod
    def forward(ctx, rows, columns, self_columns, inv_temperature: float, block: int, need_grad: bool):
        total = rows.new_zeros(())
        d_rows = torch.empty_like(rows) if need_grad else None
        d_columns = torch.zeros_like(columns) if need_grad else None
        for start in range(0, rows.shape[0], block):
            part = rows[start : start + block]
            sims = part @ columns.T
            sims.mul_(inv_temperature)
            sims[torch.arange(part.shape[0], device=rows.device), self_columns[start : start + block]] = float("-inf")
            row_max = sims.amax(dim=1, keepdim=True)
            sims.sub_(row_max).exp_()
            row_sum = sims.sum(dim=1, keepdim=True)
            total += (row_max + row_sum.log()).sum()
            if need_grad:
                sims.div_(row_sum)  # the block's softmax P
                torch.mm(sims, columns, out=d_rows[start : start + block])
                d_columns.addmm_(sims.T, part)
        if need_grad:
            d_rows.mul_(inv_temperature)
            d_columns.mul_(inv_temperature)
            ctx.save_for_backward(d_rows, d_columns)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        d_rows, d_columns = ctx.saved_tensors
        return d_rows * grad, d_columns * grad, None, None, None, None


# Above this many similarity entries per rank (2n × 2N) ``ntxent`` tiles by default (16 MiB in
# float32); the blocks then hold about BLOCK_ENTRIES entries each (64 MiB in float32: large enough
# for efficient matrix products, small next to the O(N²) matrix it replaces).
AUTO_TILE_ENTRIES = 1 << 22
BLOCK_ENTRIES = 1 << 24


def tiled_ntxent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float, block: int) -> torch.Tensor:
    """NT-Xent of this rank's anchors (mean over its 2n anchors) with ``block`` rows at a time."""
    local, columns = _normalized_rows_and_columns(z_a, z_b)
    n = z_a.shape[0]
    self_columns, _ = _self_and_positive_columns(n, columns.shape[0] // 2, z_a.device)
    need_grad = torch.is_grad_enabled() and (local.requires_grad or columns.requires_grad)
    log_sum = _TiledLogSumExp.apply(local, columns, self_columns, 1.0 / temperature, block, need_grad)
    # The positive of anchor i is the other view of its own sample, held by this rank.
    positives = 2.0 * (local[:n] * local[n:]).sum() / temperature
    return (log_sum - positives) / (2 * n)


class NTXentLoss(nn.Module):
    """SimCLR's NT-Xent loss: ``(z_a, z_b)``, each ``(B, D)``, row i = two views of sample i -> scalar.

    Computed in float32 even under bf16/fp16 autocast; self-similarities are masked; stable
    through log-sum-exp (``F.cross_entropy``).  Negatives come from all processes when
    torch.distributed is initialised with world size > 1.

    Large batches are tiled (blocks of anchor rows, see :func:`tiled_ntxent`): same loss and
    gradients, memory linear in the batch instead of quadratic.

    Args:
        temperature: τ > 0; 0.1 for large batches (ImageNet, 4096), 0.5 for small ones.
        tile_size: anchor rows per block.  ``None`` (default) tiles automatically once a rank's
            similarity matrix has more than 2²² entries (2N > 2048 on one process), with blocks
            of about 2²⁴ entries; ``0`` never tiles; a positive number always tiles with blocks
            of that many rows.
    """

    def __init__(self, temperature: float = 0.5, tile_size: int | None = None) -> None:
        super().__init__()
        if not temperature > 0:
            raise InvalidArgumentsError(f"ntxent: temperature must be > 0, got {temperature}")
        if tile_size is not None and (isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 0):
            raise InvalidArgumentsError(
                f"ntxent: tile_size must be null (automatic), 0 (never tile) or a positive number of rows, got {tile_size!r}"
            )
        self.temperature = float(temperature)
        self.tile_size = tile_size

    def block_rows(self, local_rows: int, global_columns: int) -> int | None:
        """Rows per block for a ``(local_rows, global_columns)`` similarity matrix; None: untiled."""
        if self.tile_size == 0:
            return None
        if self.tile_size is None:
            if local_rows * global_columns <= AUTO_TILE_ENTRIES:
                return None
            return max(1, BLOCK_ENTRIES // global_columns)
        return self.tile_size

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        if z_a.shape != z_b.shape or z_a.ndim != 2:
            raise ValueError(f"ntxent expects two (B, D) tensors of one shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
        with torch.autocast(device_type=z_a.device.type, enabled=False):
            block = self.block_rows(2 * z_a.shape[0], 2 * z_a.shape[0] * world_size())
            if block is not None:
                return tiled_ntxent(z_a, z_b, self.temperature, block)
            logits, targets = positive_pair_logits(z_a, z_b, self.temperature)
            return F.cross_entropy(logits, targets)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, tile_size={self.tile_size}"


@hookimpl
def contrastive_register(registries):
    registries.losses.register("ntxent", NTXentLoss)
