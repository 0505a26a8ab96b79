"""Training on a stream (an IterableDataset such as ``webdataset``): `StreamLoader`, the
loop's loader for it in place of Accelerate's prepared DataLoader.

What the loop needs of a loader — a fixed number of steps per epoch (for the LR schedule, the
progress bar and the checkpoint's ``steps_per_epoch``), every process taking the same number of
batches (collectives must not hang), a seedable epoch order and a mid-epoch resume — a map-style
dataset gets from a sampler.  A stream gets it here: the epoch is ``len(dataset) //
global_batch`` steps, and before each epoch the dataset is told its [`EpochPlan`][contrastive.components.datasets.stream.EpochPlan] (epoch,
seed, this process's rank and the world size, batches and the batches already taken), from
which each DataLoader worker streams exactly its share (the stream contract:
[`contrastive.components.datasets.stream`][contrastive.components.datasets.stream]; ``webdataset``'s rule: its module).  A resumed run's first epoch skips the
batches taken before the checkpoint inside the dataset, before decoding.

The loader is not passed through ``accelerator.prepare``: Accelerate would dispatch an
IterableDataset's batches from the main process (every batch read once, sent to all), or have
every process read the whole stream; here each process reads only its own shards.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from contrastive.components.datasets.stream import EpochPlan
from contrastive.errors import DataError


class StreamLoader:
    """This process's batches of a stream, one epoch at a time.

    ``len()`` is the steps per epoch: ``len(dataset) // (batch_size × processes)``, the same on
    every process; ``batch_size`` is one step's samples on this process (``trainer.batch_size ×
    trainer.accumulate``).  ``workers`` DataLoader workers, at most the dataset's shards per
    process (each reads its own shards); they are started afresh each epoch, as the plan they
    stream is fixed when they start.  Batches are pinned on CUDA and moved to the training device
    by `to_batch`."""

    def __init__(self, dataset, *, batch_size: int, processes: int, rank: int, workers: int,
                 device: torch.device, seed: int) -> None:
        shards = int(dataset.num_shards)
        if shards < processes:
            raise DataError(
                f"the stream has {shards} shard(s), fewer than the {processes} processes that read it (each reads "
                f"whole shards); write more, smaller shards (contrastive shard --shard-size N) or use fewer processes"
            )
        per_process = shards // processes
        if workers > per_process:
            if rank == 0:
                print(f"note: {workers} data loader workers but {per_process} shard(s) per process: using "
                      f"{per_process} (each worker reads whole shards)")
            workers = per_process
        self.dataset, self.batch_size, self.processes, self.rank, self.seed = dataset, batch_size, processes, rank, seed
        self.workers = workers
        self.steps_per_epoch = len(dataset) // (batch_size * processes)
        self.loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            drop_last=True,  # each worker yields whole batches; this only guards the rule
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,  # a worker streams the plan it was started with
            prefetch_factor=4 if workers > 0 else None,
            # a private generator: starting an epoch's workers draws their seeds from it, not from
            # the global RNG that drives the augmentations (a resumed run must see the same views)
            generator=torch.Generator().manual_seed(seed),
        )

    def __len__(self) -> int:
        return self.steps_per_epoch

    @property
    def readers(self) -> str:
        """How the stream is split (checkpoints record it): which samples an epoch's batches hold depends on it."""
        return f"{self.processes} processes x {max(self.workers, 1)} workers"

    def epoch(self, epoch: int, skip: int = 0) -> Iterable[list[torch.Tensor]]:
        """Epoch ``epoch``'s batches after the first ``skip`` (taken before a resume): the
        DataLoader, with the dataset told its plan."""
        self.dataset.start_epoch(EpochPlan(epoch=epoch, seed=self.seed, rank=self.rank, world=self.processes,
                                           batch_size=self.batch_size, batches=self.steps_per_epoch, skip=skip))
        return self.loader
