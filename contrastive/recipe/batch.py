"""A step's global batch on a number of processes: ``trainer.global_batch_size`` resolved into
``batch_size`` x processes x ``accumulate`` ([`resolve_batch`][contrastive.recipe.batch.resolve_batch]) and said in one line
([`batch_resolution`][contrastive.recipe.batch.batch_resolution])."""

from __future__ import annotations

import dataclasses

from contrastive.errors import RecipeError
from contrastive.recipe.schema import TrainerConfig


def resolve_batch(trainer: TrainerConfig, processes: int) -> TrainerConfig:
    """``trainer`` with ``batch_size`` and ``accumulate`` derived from ``global_batch_size`` for
    ``processes`` processes (unchanged when it is null): each process takes G / P images a step,
    in the fewest forward passes of at most ``max_device_batch`` images that divide it evenly
    (GradCache keeps every view of the step a negative for every other).  A global batch that
    the processes cannot share evenly is a [`RecipeError`][contrastive.errors.RecipeError]."""
    total = trainer.global_batch_size
    if total is None:
        return trainer
    if total % processes:
        raise RecipeError(
            f"trainer.global_batch_size {total} cannot be shared by {processes} processes evenly; "
            f"use a multiple of {processes} or another number of processes"
        )
    per_process = total // processes
    limit = trainer.max_device_batch or per_process
    chunks = next(k for k in range(-(-per_process // limit), per_process + 1) if per_process % k == 0)
    if chunks > 1 and per_process // chunks < limit // 2:  # e.g. a prime per-process batch: passes of 1 image
        step = processes * limit
        raise RecipeError(
            f"trainer.global_batch_size {total} on {processes} process(es) splits only into forward passes of "
            f"{per_process // chunks} images (max_device_batch {limit}); use a multiple of {step}, e.g. {max(step, total // step * step)}"
        )
    return dataclasses.replace(trainer, batch_size=per_process // chunks, accumulate=chunks)


def batch_resolution(resolved: TrainerConfig, processes: int) -> str:
    """One line: how a step's global batch is made on ``processes`` processes (``resolved``: a
    [`resolve_batch`][contrastive.recipe.batch.resolve_batch] result)."""
    total = resolved.batch_size * processes * resolved.accumulate
    return (f"global batch {total} = {processes} process{'es' if processes > 1 else ''} x batch_size "
            f"{resolved.batch_size} x accumulate {resolved.accumulate}")
