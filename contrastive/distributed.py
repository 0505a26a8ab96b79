"""Collectives that keep gradients, for losses whose negatives come from every process; and
evaluation's own process group, uneven gathers and barrier ([`evaluation_group`][contrastive.distributed.evaluation_group],
[`gather_rows`][contrastive.distributed.gather_rows], [`barrier`][contrastive.distributed.barrier], [`join_launch`][contrastive.distributed.join_launch]).

``torch.distributed.all_gather`` (and Accelerate's ``gather``) return tensors without a
gradient path to the other ranks.  [`gather_with_grad`][contrastive.distributed.gather_with_grad] is an ``all_gather`` whose backward
sums the incoming gradients over all ranks and returns this rank's slice, so that a loss
computed on the global batch back-propagates exactly as on a single device.  Together with
DDP's gradient averaging this makes W processes of n samples compute exactly the gradients of
one process on the W·n samples (``tests/test_distributed.py``; the argument is in
docs/distributed.md).  Every rank must contribute the same number of rows: a mismatch raises the
same clear ``ValueError`` on every rank instead of hanging in the collective.
[`all_gather_no_grad`][contrastive.distributed.all_gather_no_grad] is the same concatenation without a gradient, for what labels the
rows (the sample or class ids of a multi-view loss), with the same check.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when torch.distributed is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.batch = tensor.shape[0]
        size = torch.tensor([tensor.shape[0]], device=tensor.device)
        sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
        dist.all_gather(sizes, size)
        if any(int(s) != ctx.batch for s in sizes):
            raise ValueError(
                f"gather_with_grad needs the same batch on every process, got {[int(s) for s in sizes]}; "
                f"use drop_last=True in the data loader"
            )
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch
        return grad[start : start + ctx.batch]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (B, ...) from every rank into (world*B, ...), with gradient.

    Returns ``tensor`` itself when not running distributed.  Every rank must pass the same B.
    """
    if not is_distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)


def all_gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (B, ...) from every rank into (world*B, ...), without gradient.

    Returns ``tensor`` itself when not running distributed.  Every rank must pass the same B: a
    mismatch raises the ``ValueError`` of [`gather_with_grad`][contrastive.distributed.gather_with_grad] on every rank.
    """
    if not is_distributed():
        return tensor
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    if any(int(s) != tensor.shape[0] for s in sizes):
        raise ValueError(
            f"all_gather_no_grad needs the same batch on every process, got {[int(s) for s in sizes]}; "
            f"use drop_last=True in the data loader"
        )
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    return torch.cat(parts, dim=0)


# -- evaluation: every process extracts a shard, everyone gets every row --------------------------
def evaluation_group(timeout_s: float):
    """A gloo group of every process whose collectives wait ``timeout_s`` seconds (``eval.collective_timeout``),
    for evaluation's gathers and barrier; None when not running distributed.  Every process must call
    it, in the same order (it is a collective).  Gloo: the gathered features live on the CPU whatever
    the training backend; a group of its own, because the default group's timeout is
    ``trainer.collective_timeout``, meant to catch a lost process between steps, not a slow evaluation."""
    from datetime import timedelta

    if not is_distributed():
        return None
    return dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout_s))


def gather_rows(tensor: torch.Tensor, group) -> torch.Tensor:
    """Concatenate the CPU ``tensor`` ``(n_r, D)`` or ``(n_r,)`` of every rank of ``group`` in rank order
    into ``(sum n_r, D)`` / ``(sum n_r,)`` on every rank; ``n_r`` may differ, and be 0 (then ``tensor``
    may be ``(0, 0)``: the width comes from the others).  ``all_gather`` needs equal shapes, so rows
    are padded to the largest ``n_r`` and the padding dropped; every rank's dtype and ndim must agree."""
    world = dist.get_world_size(group)
    flat = tensor.flatten(1) if tensor.ndim > 1 else tensor[:, None]
    meta = torch.tensor([flat.shape[0], flat.shape[1] if flat.shape[0] else -1], dtype=torch.int64)
    metas = [torch.zeros_like(meta) for _ in range(world)]
    dist.all_gather(metas, meta, group=group)
    rows = [int(m[0]) for m in metas]
    widths = {int(m[1]) for m in metas if int(m[0])}
    if len(widths) > 1:
        raise ValueError(f"gather_rows needs the same row width on every process, got {sorted(widths)}")
    width = widths.pop() if widths else flat.shape[1]
    padded = torch.zeros(max(rows), width, dtype=tensor.dtype)
    if flat.shape[0]:
        padded[: flat.shape[0]] = flat
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded, group=group)
    out = torch.cat([part[:n] for part, n in zip(parts, rows, strict=True)])
    return out.reshape(-1) if tensor.ndim == 1 else out


def barrier(group) -> None:
    """Wait for every process of ``group`` (no-op without one), under the group's own timeout."""
    if group is not None:
        dist.barrier(group=group)


def join_launch() -> tuple[bool, torch.device]:
    """Join the processes a launcher (torchrun, ``accelerate launch``: ``WORLD_SIZE`` above 1) started
    — Accelerate's ``PartialState`` initialises the process group from the environment (``env://``;
    gloo on the CPU, NCCL on GPUs) — and return (whether this is the main process, its device: one
    GPU per process).  Outside a launcher nothing is initialised: (True, CUDA if there is one, else
    the CPU)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return True, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    return state.is_main_process, state.device
