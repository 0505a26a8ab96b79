"""Contrastive losses.

``ntxent``: the normalised temperature-scaled cross entropy of SimCLR (Chen et al., 2020,
arXiv:2002.05709, eq. 1).  For a batch of N samples with two views each, every one of the 2N
views is an anchor; its positive is the other view of the same sample and its negatives are
the remaining 2N − 2 views:

    l(i, j) = −log  exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ),   sim = cosine,

averaged over all 2N anchors.  When torch.distributed runs with several processes, the
negatives come from every process (gathered *with* gradient, see
[`contrastive.distributed`][contrastive.distributed]); each rank computes only its own 2n rows against the 2N global
columns, so the loss averaged over ranks equals the single-process loss on the global batch.

Large batches are *tiled* (`_TiledLogSumExp`): the 2n × 2N similarity matrix is never
held whole; blocks of rows are processed one after another, so the extra memory is
O(block × 2N + N × D) instead of O(n × N).  See docs/distributed.md.

``multiview_ntxent`` ([`NTXentLoss.multiview`][contrastive.components.losses.NTXentLoss.multiview]): the same loss for any number of views and
any grouping, ``(z, ids)``: rows of ``z`` with equal ``ids`` are positives of each other, and
every other row of every process is in the denominator.  That is L^sup_out of SupCon (Khosla et
al., 2020, arXiv:2004.11362, eq. 2):

    l(i) = logsumexp_{a≠i} sim(z_i, z_a)/τ  −  (1/|P(i)|) Σ_{p∈P(i)} sim(z_i, z_p)/τ,

averaged over the anchors that have a positive (|P(i)| > 0; the others are left out).  SimCLR
with V views is ``ids`` = the sample index of each view (V − 1 positives per anchor; V = 2 is
``ntxent``), SupCon is ``ids`` = the class label of each view.  The positive term never forms a
pair mask: Σ_{p∈P(i)} z_p is the sum of the unit rows of i's id minus z_i itself.  Across
processes, every rank gathers all rows (with gradient) and all ids (without), computes only its
own rows, and divides its sum by the global number of valid anchors over the world size, so
that the losses and gradients averaged over ranks (as DDP averages) are those of one process on
the global batch, even when the ranks hold different numbers of valid anchors.

The temperature is a number, a schedule the training loop sets before every step (the loss keeps
it as the float attribute ``temperature``; [`contrastive.schedules`][contrastive.schedules]), or *learned*:
``temperature: learned`` (or ``{learned: true, init, min, max}``) makes τ a parameter of the loss,
log-parameterised and bounded ([`LearnedScalar`][contrastive.components.learned.LearnedScalar]), trained with
the rest of the method.  Its gradient flows through both paths: the plain one by autograd, the
tiled one through `_TiledLogSumExp`, which also returns the gradient with respect to 1/τ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from contrastive import hookimpl
from contrastive.bounds import check_arguments
from contrastive.components.learned import learned_or_none
from contrastive.distributed import all_gather_no_grad, gather_with_grad, rank, world_size
from contrastive.errors import InvalidArgumentsError

if TYPE_CHECKING:
    from contrastive.registry import Registries


Temperature = float | torch.Tensor
"""τ: a number, or a 0-dim tensor (a learned τ, whose gradient the losses return)."""


def positive_pair_logits(z_a: torch.Tensor, z_b: torch.Tensor, temperature: Temperature) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarity logits of this rank's anchors against every view of the global batch.

    Args:
        z_a, z_b: ``(n, D)`` embeddings of the two views of this rank's n samples.
        temperature: τ, a number or a 0-dim tensor.
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
    whole ``(R, C)`` similarity matrix; with ``weights`` ``(R,)``, ``Σ_i w_i · logsumexp_i``.

    The output is a scalar, so the gradient of the whole sum is known up to the incoming scalar
    factor while each block's softmax is at hand: the forward pass accumulates
    ``d/d rows = P @ columns / τ`` and ``d/d columns = Pᵀ @ rows / τ`` block by block (P the
    row-softmax of the block) and the backward pass only scales them.  That is the same memory
    as recomputing the similarities in backward, O(block × C + (R + C) × D), and one matrix
    product per block less.  Log-sum-exp is taken with the row maximum in ≥ float32.  Weighted,
    each block's softmax rows are scaled by their weights before they are accumulated.

    ``inv_temperature`` (1/τ) is a number, or a 0-dim tensor for a learned τ: its gradient,
    ``Σ_i w_i Σ_k P_ik s_ik``, is ``Σ_i rows_i · (P @ columns)_i`` — the unscaled ``d/d rows``
    dotted with the rows, one elementwise product after the blocks, no extra matrix product.
    """

    @staticmethod
    def forward(ctx, rows, columns, self_columns, inv_temperature, block: int, need_grad: bool, weights=None):
        ctx.learned = isinstance(inv_temperature, torch.Tensor)
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
            log_sums = row_max + row_sum.log()
            if weights is not None:
                log_sums = log_sums * weights[start : start + block, None]
            total += log_sums.sum()
            if need_grad:
                sims.div_(row_sum)  # the block's softmax P
                if weights is not None:
                    sims.mul_(weights[start : start + block, None])
                torch.mm(sims, columns, out=d_rows[start : start + block])
                d_columns.addmm_(sims.T, part)
        if need_grad:
            d_inverse = (d_rows * rows).sum() if ctx.learned else None  # Σ_i w_i Σ_k P_ik s_ik
            d_rows.mul_(inv_temperature)
            d_columns.mul_(inv_temperature)
            ctx.save_for_backward(d_rows, d_columns, d_inverse)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        d_rows, d_columns, d_inverse = ctx.saved_tensors
        d_inverse = d_inverse * grad if ctx.learned else None
        return d_rows * grad, d_columns * grad, None, d_inverse, None, None, None


# Above this many similarity entries per rank (2n × 2N) ``ntxent`` tiles by default (16 MiB in
# float32); the blocks then hold about BLOCK_ENTRIES entries each (64 MiB in float32: large enough
# for efficient matrix products, small next to the O(N²) matrix it replaces).
AUTO_TILE_ENTRIES = 1 << 22
BLOCK_ENTRIES = 1 << 24


def _needs_grad(*tensors: Any) -> bool:
    """Whether autograd must differentiate through any of ``tensors`` (numbers never)."""
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def tiled_ntxent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: Temperature, block: int) -> torch.Tensor:
    """NT-Xent of this rank's anchors (mean over its 2n anchors) with ``block`` rows at a time."""
    local, columns = _normalized_rows_and_columns(z_a, z_b)
    n = z_a.shape[0]
    self_columns, _ = _self_and_positive_columns(n, columns.shape[0] // 2, z_a.device)
    need_grad = _needs_grad(local, columns, temperature)
    log_sum = _TiledLogSumExp.apply(local, columns, self_columns, 1.0 / temperature, block, need_grad)
    # The positive of anchor i is the other view of its own sample, held by this rank.
    positives = 2.0 * (local[:n] * local[n:]).sum() / temperature
    return (log_sum - positives) / (2 * n)


def _block_rows(tile_size: int | None, local_rows: int, global_columns: int) -> int | None:
    """The rule of [`NTXentLoss.block_rows`][contrastive.components.losses.NTXentLoss.block_rows] for a given ``tile_size``."""
    if tile_size == 0:
        return None
    if tile_size is None:
        if local_rows * global_columns <= AUTO_TILE_ENTRIES:
            return None
        return max(1, BLOCK_ENTRIES // global_columns)
    return tile_size


def multiview_ntxent(
    z: torch.Tensor, ids: torch.Tensor, temperature: Temperature, *, tile_size: int | None = None
) -> torch.Tensor:
    """Multi-view NT-Xent / SupCon L^sup_out (Khosla et al., 2020, arXiv:2004.11362, eq. 2).

    ``loss_i = logsumexp_{a≠i} s_ia/τ − (1/|P(i)|) Σ_{p∈P(i)} s_ip/τ`` with s the cosine
    similarity, a over every other row of every process and P(i) the other rows with i's id.
    SimCLR (Chen et al., 2020, arXiv:2002.05709) with V views of each sample is ``ids`` = the
    sample index repeated V times; ``z = cat([z_a, z_b])``, ``ids = arange(B).repeat(2)`` is
    ``NTXentLoss.forward(z_a, z_b)``.  SupCon is ``ids`` = the class labels repeated V times.

    Args:
        z: ``(N, D)`` this process's rows, any float dtype; computed in float32 (float64 kept)
            with autocast off.
        ids: ``(N,)`` integer group of each row; equal ids are positives (never of themselves).
        temperature: τ > 0, a number or a 0-dim tensor (a learned τ: it receives its gradient).
        tile_size: as in [`NTXentLoss`][contrastive.components.losses.NTXentLoss]: ``None`` tiles above 2²² similarity entries per
            rank, ``0`` never, a positive number always with blocks of that many rows.
    Returns:
        A scalar: the sum of this rank's anchor losses divided by (global number of anchors
        with a positive / world size).  With torch.distributed, the columns are the unit rows of
        all ranks gathered with gradient (every rank must pass the same N) and the ids are
        gathered without; each rank computes only its own N rows.  The mean over ranks of the
        losses, and of their gradients, is then the one-process loss on the global batch, also
        when ranks hold different numbers of valid anchors.  Anchors without a positive are left
        out; if no anchor of any rank has one the result is ``0`` with a gradient path (zero
        gradients), so that training steps and DDP still run.
    """
    if z.ndim != 2:
        raise ValueError(f"multiview ntxent expects z of shape (N, D), got {tuple(z.shape)}")
    if ids.ndim != 1 or ids.shape[0] != z.shape[0]:
        raise ValueError(f"multiview ntxent expects ids of shape (N,) = ({z.shape[0]},), got {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"multiview ntxent expects integer ids, got {ids.dtype}")
    if isinstance(temperature, torch.Tensor):  # a learned τ, kept within its bounds by its module
        check_arguments("ntxent", NTXentLoss, tile_size=tile_size)
    else:
        check_arguments("ntxent", NTXentLoss, temperature=temperature, tile_size=tile_size)
    with torch.autocast(device_type=z.device.type, enabled=False):
        n = z.shape[0]
        dtype = _compute_dtype(z.dtype)
        column_ids = all_gather_no_grad(ids.to(device=z.device, dtype=torch.int64))
        groups, column_group = torch.unique(column_ids, return_inverse=True)
        counts = torch.bincount(column_group, minlength=groups.shape[0])
        # Every rank holds every id, so the global number of valid anchors needs no collective.
        global_valid = int((counts[column_group] > 1).sum())
        if global_valid == 0:  # the same on every rank: all of them skip the gathers below
            return (z.to(dtype).sum() + temperature) * 0  # a zero gradient for τ too (DDP wants one)
        local = F.normalize(z.to(dtype), dim=1)
        columns = gather_with_grad(local)
        self_columns = torch.arange(n, device=z.device) + rank() * n
        group = column_group[self_columns]
        positives = counts[group] - 1
        valid = positives > 0
        group_sums = columns.new_zeros(groups.shape[0], columns.shape[1]).index_add(0, column_group, columns)
        positive_sims = (local * (group_sums[group] - local)).sum(dim=1)  # Σ_{p∈P(i)} s_ip
        positive_mean = positive_sims / positives.clamp(min=1).to(dtype) / temperature
        block = _block_rows(tile_size, n, columns.shape[0])
        if block is None:
            logits = local @ columns.T / temperature
            logits[torch.arange(n, device=z.device), self_columns] = float("-inf")
            log_sum = torch.where(valid, torch.logsumexp(logits, dim=1), 0).sum()
        else:
            need_grad = _needs_grad(local, columns, temperature)
            weights = valid.to(dtype)
            log_sum = _TiledLogSumExp.apply(local, columns, self_columns, 1.0 / temperature, block, need_grad, weights)
        positive_sum = torch.where(valid, positive_mean, 0).sum()
        return (log_sum - positive_sum) * (world_size() / global_valid)


class NTXentLoss(nn.Module):
    """SimCLR's NT-Xent loss: ``(z_a, z_b)``, each ``(B, D)``, row i = two views of sample i -> scalar.

    Computed in float32 even under bf16/fp16 autocast; self-similarities are masked; stable
    through log-sum-exp (``F.cross_entropy``).  Negatives come from all processes when
    torch.distributed is initialised with world size > 1.

    Large batches are tiled (blocks of anchor rows, see [`tiled_ntxent`][contrastive.components.losses.tiled_ntxent]): same loss and
    gradients, memory linear in the batch instead of quadratic.

    Args:
        temperature: τ > 0; 0.1 for large batches (ImageNet, 4096), 0.5 for small ones.  A number
            (kept as the float attribute ``temperature``, which a recipe schedule sets every step),
            or ``"learned"`` / ``{"learned": True, "init": 0.1, "min": 0.01, "max": 1.0}``: a
            parameter ``learned_temperature`` ([`LearnedScalar`][contrastive.components.learned.LearnedScalar]) trained with the
            method; ``temperature`` then reads its current value.
        tile_size: anchor rows per block.  ``None`` (default) tiles automatically once a rank's
            similarity matrix has more than 2²² entries (2N > 2048 on one process), with blocks
            of about 2²⁴ entries; ``0`` never tiles; a positive number always tiles with blocks
            of that many rows.
    """

    arg_bounds: ClassVar[dict[str, dict[str, float]]] = {"temperature": {"gt": 0}, "tile_size": {"min": 0}}
    learnable_args: ClassVar[tuple[str, ...]] = ("temperature",)

    def __init__(self, temperature: float | Literal["learned"] | dict[str, Any] = 0.5, tile_size: int | None = None) -> None:
        super().__init__()
        self.learned_temperature = learned_or_none("ntxent", "temperature", temperature)
        initial = self.learned_temperature.spec.init if self.learned_temperature is not None else temperature
        check_arguments("ntxent", NTXentLoss, temperature=initial, tile_size=tile_size)
        self._temperature = float(initial)
        self.tile_size = tile_size

    @property
    def temperature(self) -> float:
        """τ now: the number (a schedule's value of this step), or the learned value (a device sync)."""
        return self.learned_temperature.item() if self.learned_temperature is not None else self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        if self.learned_temperature is not None:
            raise InvalidArgumentsError("ntxent: the temperature is learned; it cannot also be set or follow a schedule")
        self._temperature = float(value)

    def tau(self) -> Temperature:
        """τ as the loss uses it: the number, or the learned value as a 0-dim tensor (with its graph)."""
        return self.learned_temperature() if self.learned_temperature is not None else self._temperature

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
                return tiled_ntxent(z_a, z_b, self.tau(), block)
            logits, targets = positive_pair_logits(z_a, z_b, self.tau())
            return F.cross_entropy(logits, targets)

    def multiview(self, z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Multi-view / supervised form, ``(z (N, D), ids (N,)) -> scalar``: rows with equal ids
        are positives (SimCLR with V views: sample indices; SupCon: class labels); see
        [`multiview_ntxent`][contrastive.components.losses.multiview_ntxent].  ``forward(z_a, z_b)`` is
        ``multiview(cat([z_a, z_b]), arange(B).repeat(2))``.  Tiles as ``forward`` does."""
        return multiview_ntxent(z, ids, self.tau(), tile_size=self.tile_size)

    def extra_repr(self) -> str:
        if self.learned_temperature is not None:
            return f"tile_size={self.tile_size}"  # the learned temperature is a submodule, shown below
        return f"temperature={self.temperature}, tile_size={self.tile_size}"


@hookimpl
def contrastive_register(registries: Registries):
    registries.losses.register("ntxent", NTXentLoss)
