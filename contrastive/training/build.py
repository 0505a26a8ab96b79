"""Recipe -> a ready `Run`: output directory claimed (`output_dir`), Accelerator (`accelerator`),
parts, DataLoader or `StreamLoader` (`loader`), optimiser, scheduler, prepare, resume."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from contrastive.components.augmentations.views import Views
from contrastive.errors import ContrastiveError, DataError, RecipeError
from contrastive.methods.base import Batch, Method
from contrastive.plan import RunPlan
from contrastive.recipe import Recipe, TrainerConfig, resolve_batch
from contrastive.recipe.scheduled import optimizer_args
from contrastive.storage.run_dir import RunDir
from contrastive.storage.run_lock import RunLock
from contrastive.training.accelerator import (
    data_path_options,
    effective_precision,
    make_accelerator,
    maybe_sync_batchnorm,
)
from contrastive.training.data import guard_loader, to_batch
from contrastive.training.loader import make_loader
from contrastive.training.lr_groups import pin_fixed_groups, split_param_groups
from contrastive.training.output_dir import claim_output_dir, make_output_dir
from contrastive.training.parts import build_parts
from contrastive.training.resume import restore
from contrastive.training.scheduled import ScheduledValues, with_learned_options
from contrastive.training.state import TrainState
from contrastive.training.streaming import StreamLoader

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch.optim.lr_scheduler import LRScheduler
    from torch.utils.data import DataLoader, Dataset

    from contrastive.registry import Registries


@dataclass
class Run:
    """One training run, built and prepared: what the loop, the step and the callbacks share."""

    recipe: Recipe  # the run's recipe (RunPlan.applied_to): what config.yaml records
    plan: RunPlan  # computed once before the backbone (contrastive.plan); config.yaml's plan: section
    registries: Registries
    accelerator: Accelerator
    out: Path  # trainer.output_dir
    dataset: Dataset
    views: Views  # on the training device
    model: nn.Module  # the method as Accelerate prepared it (DDP-wrapped with several processes)
    method: Method  # the same method, unwrapped
    optimizer: torch.optim.Optimizer  # wrapped by Accelerate (AcceleratedOptimizer)
    scheduler: LRScheduler
    loader: DataLoader | StreamLoader
    state: TrainState
    global_batch: int  # images per optimiser step over all processes
    in_chans: int
    started: float  # time.perf_counter() when fit began
    values: ScheduledValues  # the recipe's schedules (set before each step) and learned values
    lock: RunLock | None = None  # the output directory's lock (main process), released when fit ends
    resumed_from: Path | None = None  # the checkpoint restored (trainer.resume), None for a fresh start

    @property
    def trainer(self) -> TrainerConfig:
        return self.recipe.trainer

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def files(self) -> RunDir:
        """The paths of the run directory's files (`RunDir`)."""
        return RunDir(self.out)

    @property
    def checkpoint_dir(self) -> Path:
        return self.files.checkpoints

    @property
    def views_per_step(self) -> int:
        return self.views.total * self.global_batch

    def batches(self) -> Iterator[Batch]:
        """This epoch's remaining batches (after ``state.batches_done`` of them), as [`Batch`][contrastive.methods.base.Batch]."""
        skip = self.state.batches_done
        if isinstance(self.loader, StreamLoader):  # a stream skips inside the dataset, before decoding
            batches = self.loader.epoch(self.state.epoch, skip)
        else:
            self.loader.set_epoch(self.state.epoch)
            batches = self.accelerator.skip_first_batches(self.loader, skip) if skip else self.loader
        for items in guard_loader(batches, self.dataset):  # worker errors: one line, naming the file
            yield to_batch(items, self.in_chans, self.device)


def build_run(recipe: Recipe, registries: Registries) -> Run:
    """Everything a run needs, built in a fixed order from the seeded RNG, prepared by Accelerate,
    with the output directory locked and the newest checkpoint restored when ``trainer.resume`` asks."""
    started = time.perf_counter()
    trainer = recipe.trainer
    if effective_precision(trainer) == "fp16" and (trainer.cpu or not torch.cuda.is_available()):
        raise RecipeError("mixed precision fp16 needs a GPU; use bf16 or no on the CPU (--trainer.mixed_precision)")
    out = make_output_dir(trainer)
    accelerator = make_accelerator(trainer, out)
    # trainer.global_batch_size -> batch_size x accumulate for this many processes: the run's
    # recipe (a new object; ``recipe`` is not changed) holds what runs, which resume auto compares
    # and config.yaml records (the run's plan, contrastive.plan, makes the same resolution)
    resolved = dataclasses.replace(recipe, trainer=resolve_batch(trainer, accelerator.num_processes))
    lock = claim_output_dir(resolved, out, accelerator)
    try:
        run = _build(recipe, registries, out, accelerator, started)
        run.lock = lock
        restore(run)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return run


def _build(recipe: Recipe, registries: Registries, out: Path, accelerator: Accelerator, started: float) -> Run:
    from accelerate.utils import set_seed

    from contrastive.training.host_memory import keep_freed_host_memory

    set_seed(recipe.seed)
    device = accelerator.device
    if device.type == "cpu":  # steps re-allocate the same large tensors: keep freed memory (host_memory)
        keep_freed_host_memory()

    processes = accelerator.num_processes
    parts = build_parts(recipe, registries, {"processes": processes, "precision": str(accelerator.mixed_precision)})
    plan = parts.plan
    recipe = plan.applied_to(recipe)  # the run's recipe: resolved batch; evaluation off when it cannot run
    trainer = recipe.trainer
    # One optimiser step: `accumulate` forward passes of batch_size images on each process, all
    # of whose views are negatives for each other (GradCache, training.step); the lr scales with it.
    global_batch = trainer.batch_size * processes * trainer.accumulate
    if len(parts.dataset) < global_batch:
        raise DataError(
            f"the dataset has {len(parts.dataset)} images, fewer than one global batch of {global_batch} "
            f"({trainer.batch_size} × {processes} processes × accumulate {trainer.accumulate}); lower --trainer.batch_size"
        )
    try:
        parts.method.check_data(len(parts.dataset), global_batch)
    except ContrastiveError as exc:
        raise type(exc)(f"method '{recipe.method.name}': {exc}") from exc
    loader = make_loader(parts.dataset, trainer, accelerator, recipe.seed)
    method = maybe_sync_batchnorm(parts.method, trainer.sync_batchnorm, processes, device)
    data_path_options(method, parts.views, trainer, device)
    optimizer = registries.optimizers.build(
        recipe.optimizer.name,
        named_parameters=list(method.trainable_parameters()),
        batch_size=global_batch,
        **optimizer_args(recipe.optimizer.args),  # a weight-decay schedule: built at its largest value
    )
    split_param_groups(optimizer, list(method.trainable_parameters()),
                       with_learned_options(method, method.param_group_options))
    if isinstance(loader, StreamLoader):  # split over the processes by the stream itself (training.streaming)
        model, optimizer = accelerator.prepare(method, optimizer)
    else:
        model, optimizer, loader = accelerator.prepare(method, optimizer, loader)
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * trainer.max_epochs
    if trainer.max_steps is not None:
        total_steps = min(total_steps, trainer.max_steps)
    scheduler = registries.schedulers.build(
        recipe.scheduler.name,
        optimizer=optimizer,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        **recipe.scheduler.args,
    )
    pin_fixed_groups(scheduler, optimizer)
    accelerator.unwrap_model(model).set_training_length(steps_per_epoch, total_steps)
    values = ScheduledValues.for_run(recipe, accelerator.unwrap_model(model), parts.loss, optimizer,
                                     steps_per_epoch, total_steps)
    return Run(
        recipe=recipe, plan=plan, registries=registries, accelerator=accelerator, out=out, dataset=parts.dataset,
        views=parts.views.to(device), model=model, method=accelerator.unwrap_model(model), optimizer=optimizer,
        scheduler=scheduler, loader=loader,
        state=TrainState(steps_per_epoch, total_steps, trainer.max_epochs,
                         data_readers=loader.readers if isinstance(loader, StreamLoader) else None),
        global_batch=global_batch, in_chans=parts.in_chans, started=started, values=values,
    )
