"""Building blocks for methods with memory: a momentum (EMA) encoder and a queue of features.

* [`MomentumEncoder`][contrastive.methods.memory.MomentumEncoder] — a frozen copy of an encoder that follows it by an exponential
  moving average of its parameters (MoCo's key encoder, BYOL's target network).
* [`momentum_schedule`][contrastive.methods.memory.momentum_schedule] — the EMA coefficient at a step: constant (MoCo v2) or cosine from a
  base value to a final one (BYOL, MoCo v3).
* [`FeatureQueue`][contrastive.methods.memory.FeatureQueue] — a ring buffer of past features, the same on every process (MoCo's
  negatives, NNCLR's support set).

All state lives in parameters and buffers, so ``state_dict``, DDP and checkpoints see it and a
resumed run continues bit for bit.  Only a method's ``after_step`` should call the writing
operations ([`MomentumEncoder.update`][contrastive.methods.memory.MomentumEncoder.update], [`FeatureQueue.push`][contrastive.methods.memory.FeatureQueue.push]): ``forward`` and ``loss``
must not write state (the loop replays ``forward`` under ``trainer.accumulate``).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastive.distributed import all_gather_no_grad
from contrastive.errors import InvalidArgumentsError, RecipeError


class MomentumEncoder(nn.Module):
    """A frozen deep copy of ``module`` updated as an EMA of it: ``p_k = m·p_k + (1 − m)·p_q``.

    Its parameters do not require grad (no optimiser, no DDP gradient reduction touches them).
    It is *not* kept in eval mode: it follows the mode of the method that owns it, so in
    training its BatchNorm layers normalise with the batch statistics of what it encodes and
    update their own running statistics, as MoCo's key encoder does.  [`update`][contrastive.methods.memory.MomentumEncoder.update] moves only
    the parameters, as the official MoCo code does (``param_k.data = param_k.data * m +
    param_q.data * (1. - m)``); the buffers (BatchNorm running statistics) evolve by the
    encoder's own forward passes.

    ``forward(*args)`` is ``module(*args)``, e.g. ``(N, C, H, W) -> (N, D)`` for backbone + head;
    call it under ``torch.no_grad()``.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = copy.deepcopy(module)
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, source: nn.Module, momentum: float) -> None:
        """``p_k ← m·p_k + (1 − m)·p_q`` for every parameter ``p_k`` of this copy and the
        parameter ``p_q`` of the same name in ``source`` (the module it was copied from)."""
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        mine = dict(self.module.named_parameters())
        theirs = dict(source.named_parameters())
        if mine.keys() != theirs.keys():
            raise ValueError(
                f"MomentumEncoder.update: the source's parameters {sorted(theirs.keys() ^ mine.keys())[:5]} do not "
                f"match the copy's (pass the module it was copied from)"
            )
        for name, target in mine.items():
            target.mul_(momentum).add_(theirs[name].detach().to(target.dtype), alpha=1.0 - momentum)


def momentum_schedule(step: int, total_steps: int, base: float, final: float = 1.0, schedule: str = "constant") -> float:
    """The EMA coefficient at ``step`` of ``total_steps`` (pure).

    ``constant``: ``base`` (MoCo v2).  ``cosine``: ``final − (final − base)·(cos(π·step/total) + 1)/2``,
    ``base`` at step 0 rising to ``final`` at ``total_steps`` (BYOL, MoCo v3).
    """
    if schedule == "constant":
        return float(base)
    if schedule != "cosine":
        raise InvalidArgumentsError(f"momentum schedule must be 'constant' or 'cosine', got {schedule!r}")
    if total_steps <= 0:
        raise InvalidArgumentsError(f"total_steps must be > 0, got {total_steps}")
    progress = min(max(step / total_steps, 0.0), 1.0)
    return float(final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0)


class FeatureQueue(nn.Module):
    """A ring buffer of ``size`` feature rows of dimension ``dim``, the same on every process.

    Buffers (persistent: checkpoints carry them): ``keys`` ``(size, dim)``, ``pointer`` (int64
    scalar, the row the next push writes first) and ``filled`` (int64 scalar, how many rows hold
    features; ``size`` once it has wrapped).  The queue fills rows ``0, 1, ...`` in order, so the
    filled rows are always ``keys[:filled]``.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if int(size) < 1 or int(dim) < 1:
            raise InvalidArgumentsError(f"FeatureQueue needs size >= 1 and dim >= 1, got size {size}, dim {dim}")
        self.register_buffer("keys", torch.zeros(int(size), int(dim)))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.int64))
        self.register_buffer("filled", torch.zeros((), dtype=torch.int64))

    @property
    def size(self) -> int:
        return int(self.keys.shape[0])

    @property
    def dim(self) -> int:
        return int(self.keys.shape[1])

    def __len__(self) -> int:
        return int(self.filled)

    @torch.no_grad()
    def push(self, keys: Tensor) -> None:
        """Append THIS process's ``keys`` ``(n, dim)``: every process's keys are gathered in rank
        order (``(world·n, dim)``, no gradient) and written from ``pointer`` on, wrapping round
        the end; when more than ``size`` rows arrive at once, the last ``size`` of them are kept.
        Every process calls it with the same ``n`` and then holds the same queue."""
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"FeatureQueue.push takes (n, {self.dim}) keys, got {tuple(keys.shape)}")
        rows = all_gather_no_grad(keys.detach())
        n = rows.shape[0]
        if n == 0:
            return
        positions = (self.pointer + torch.arange(n, device=self.keys.device)) % self.size
        if n > self.size:
            rows, positions = rows[n - self.size:], positions[n - self.size:]
        self.keys.index_copy_(0, positions, rows.to(device=self.keys.device, dtype=self.keys.dtype))
        self.pointer.copy_((self.pointer + n) % self.size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.size))

    def check_fits_an_epoch(self, num_samples: int, global_batch: int, *, per_image: int = 1,
                            rows: str = "keys", detail: str = "", why: str = "") -> None:
        """Raise [`RecipeError`][contrastive.errors.RecipeError] before training when the queue is larger than the rows one
        epoch pushes (``num_samples`` images in drop-last steps of ``global_batch``, ``per_image``
        rows each): it would then hold older rows of the very images it is read against."""
        pushed = (num_samples // global_batch) * global_batch * per_image
        if self.size > pushed:
            raise RecipeError(
                f"queue_size {self.size} is larger than the {pushed} {rows} one epoch pushes "
                f"({num_samples} images in steps of {global_batch}{detail}): {why}; "
                f"set --method.args.queue_size {pushed} or less"
            )

    def read(self) -> Tensor:
        """The filled rows, ``(filled, dim)`` (a view of the buffer: do not modify it); empty
        ``(0, dim)`` before the first push."""
        return self.keys[: int(self.filled)]

    def nearest(self, z: Tensor) -> Tensor:
        """For each row of ``z`` ``(n, dim)``, the filled queue row of highest cosine similarity
        to it: ``(n, dim)`` (the stored rows, not normalised again; ties: the lowest row)."""
        support = self.read()
        if support.shape[0] == 0:
            raise ValueError("FeatureQueue.nearest: the queue is empty (push features first)")
        similarity = F.normalize(z, dim=1) @ F.normalize(support.to(z.dtype), dim=1).T
        return support[similarity.argmax(dim=1)].to(z.dtype)
