"""The training batches: a shuffled, drop-last DataLoader of `TrainingItems` (map-style data) or
a `StreamLoader` (a stream), and how many workers read them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from contrastive.components.datasets.stream import is_stream
from contrastive.recipe import TrainerConfig
from contrastive.training.data import TrainingItems
from contrastive.training.streaming import StreamLoader

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch.utils.data import Dataset


def default_workers(on_cuda: bool) -> int:
    """DataLoader workers: the augmentations run on the training device, so workers only read and
    decode; on a small CPU machine extra processes would compete with the model for cores."""
    cores = os.cpu_count() or 1
    if on_cuda:
        return min(8, cores)
    return 0 if cores <= 2 else min(4, cores // 2)


def make_loader(dataset: Dataset, trainer: TrainerConfig, accelerator: Accelerator, seed: int) -> torch.utils.data.DataLoader | StreamLoader:
    """Shuffled, drop-last batches of ``batch_size × accumulate`` `TrainingItems` (one step
    each); a stream (an IterableDataset) gets a `StreamLoader` of the same batches."""
    device = accelerator.device
    workers = trainer.num_workers if trainer.num_workers is not None else default_workers(device.type == "cuda")
    if is_stream(dataset):
        return StreamLoader(dataset, batch_size=trainer.batch_size * trainer.accumulate,
                            processes=accelerator.num_processes, rank=accelerator.process_index, workers=workers,
                            device=device, seed=seed)
    return torch.utils.data.DataLoader(
        TrainingItems(dataset),
        batch_size=trainer.batch_size * trainer.accumulate,
        shuffle=True,
        drop_last=True,  # every process has the same batch: gather_with_grad needs it
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        # A private generator: creating an epoch's iterator must not draw from the global RNG
        # that drives the augmentations, or a mid-epoch resume would see different views.
        generator=torch.Generator().manual_seed(seed),
    )
