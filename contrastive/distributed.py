"""Collectives that keep gradients, for losses whose negatives come from every process.

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
