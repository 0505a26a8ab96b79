"""Recipe -> a ready `Run`: output directory claimed, Accelerator, parts, DataLoader (or, for
a stream, a `StreamLoader`), optimiser, scheduler, prepare, resume."""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from contrastive.components.augmentations.views import Views
from contrastive.components.datasets.stream import is_stream
from contrastive.errors import ContrastiveError, DataError, RecipeError
from contrastive.methods.base import Batch, Method
from contrastive.plan import RunPlan
from contrastive.recipe import Recipe, TrainerConfig, resolve_batch
from contrastive.storage import checkpoint
from contrastive.storage.run_dir import RunDir
from contrastive.storage.run_lock import RunLock
from contrastive.training.data import TrainingItems, guard_loader, to_batch
from contrastive.training.lr_groups import pin_fixed_groups, split_param_groups
from contrastive.training.parts import build_parts
from contrastive.training.resume import check_same_recipe, restore
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


def default_workers(on_cuda: bool) -> int:
    """DataLoader workers: the augmentations run on the training device, so workers only read and
    decode; on a small CPU machine extra processes would compete with the model for cores."""
    cores = os.cpu_count() or 1
    if on_cuda:
        return min(8, cores)
    return 0 if cores <= 2 else min(4, cores // 2)


def make_output_dir(trainer: TrainerConfig) -> Path:
    """Create (and probe) ``trainer.output_dir`` on every process; nothing in it is touched."""
    out = Path(trainer.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = RunDir(out).write_probe()  # one per process: every rank checks
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise RecipeError(
            f"trainer.output_dir '{out}' cannot be created or written ({exc.strerror or exc}); "
            f"choose another with --trainer.output_dir PATH"
        ) from exc
    return out


def claim_output_dir(recipe: Recipe, out: Path, accelerator: Accelerator) -> RunLock | None:
    """Take ``out``'s lock (main process) and decide what happens to the checkpoints in it
    before anything is written: refuse to mix a new run into an old one's checkpoints, remove
    them for ``overwrite``, and for ``resume: auto`` check that they are of this recipe.  Every
    process gets the same verdict (one collective); the main process returns the held lock."""
    from accelerate.utils import broadcast_object_list

    trainer = recipe.trainer
    lock, problem = None, None
    if accelerator.is_main_process:
        try:
            lock = RunLock(out)
            note = lock.acquire()
            if note:
                print(note)
            if checkpoint.complete(RunDir(out).checkpoints):
                if trainer.resume == "auto":
                    check_same_recipe(out, recipe)
                elif not trainer.resume and not trainer.overwrite:
                    raise RecipeError(
                        f"trainer.output_dir '{out}' already holds a run's checkpoints; continue it with "
                        f"--trainer.resume auto, start over with --trainer.overwrite true, or pick a new --trainer.output_dir"
                    )
                elif not trainer.resume:
                    import shutil

                    shutil.rmtree(RunDir(out).checkpoints, ignore_errors=True)
        except ContrastiveError as exc:
            problem = str(exc)
            if lock is not None:
                lock.release()
    problem = broadcast_object_list([problem])[0]
    if problem:
        raise RecipeError(problem)
    return lock


def maybe_sync_batchnorm(model: nn.Module, enabled: bool, processes: int, device: torch.device) -> nn.Module:
    """``trainer.sync_batchnorm``: BatchNorm statistics over the global batch (the paper's global BN)."""
    if not enabled:
        return model
    if processes == 1:
        print("note: trainer.sync_batchnorm has no effect with one process (BatchNorm already sees the whole batch)")
        return model
    if device.type == "cpu":
        raise RecipeError(
            "trainer.sync_batchnorm needs GPUs: torch's SyncBatchNorm does not run on the CPU (gloo); "
            "set --trainer.sync_batchnorm false for multi-process CPU training"
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def data_path_options(method: Method, views: Views, trainer: TrainerConfig, device: torch.device) -> None:
    """``trainer.channels_last`` (None: on for CUDA, off for the CPU, where oneDNN ran ResNet-18
    slower in NHWC) and ``trainer.compile`` (the backbone compiled in place: its state_dict keys,
    and so checkpoints and ``backbone.safetensors``, stay those of the plain model)."""
    channels_last = trainer.channels_last if trainer.channels_last is not None else device.type == "cuda"
    if channels_last:
        method.to(memory_format=torch.channels_last)
        views.channels_last = True
    if trainer.compile:
        method.backbone.compile()


#: The package each tracker of trainer.log_with needs, for the error when it is missing.
TRACKER_PACKAGES = {"comet_ml": "comet-ml"}


def tensorboard_installed() -> bool:
    """Whether Accelerate's TensorBoard tracker can run: ``tensorboard`` (or ``tensorboardX``) is importable."""
    import importlib.util

    return any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX"))


def trackers(trainer: TrainerConfig) -> list[str]:
    """``trainer.log_with`` as a list, each tracker's package checked to be installed.  The
    default (None) is TensorBoard where it is installed, else no tracker and one warning
    (``metrics.jsonl`` has every record either way); a tracker named explicitly must be installed."""
    from accelerate.tracking import get_available_trackers

    if trainer.log_with is None:
        if tensorboard_installed():
            return ["tensorboard"]
        warnings.warn("TensorBoard is not installed: this run logs to metrics.jsonl only (pip install tensorboard, "
                      "or pick a tracker with --trainer.log_with)", stacklevel=2)
        return []
    names = [trainer.log_with] if isinstance(trainer.log_with, str) else list(trainer.log_with)
    available = {str(t) for t in get_available_trackers()}
    missing = [n for n in names if n not in available]
    if missing:
        packages = " ".join(TRACKER_PACKAGES.get(n, n) for n in missing)
        raise RecipeError(f"trainer.log_with {', '.join(missing)}: not installed; pip install {packages} "
                          f"(or log with another: --trainer.log_with tensorboard, or none: --trainer.log_with '[]')")
    return names


def effective_precision(trainer: TrainerConfig) -> str:
    """The mixed precision the run will use: the recipe's, else the launcher's, else no."""
    return trainer.mixed_precision or os.environ.get("ACCELERATE_MIXED_PRECISION") or "no"


def make_accelerator(trainer: TrainerConfig, out: Path) -> Accelerator:
    """The run's Accelerator: precision, device, TensorBoard in ``out``, seedable sampling, and
    ``trainer.collective_timeout`` for every collective (a lost process ends the others then,
    not after the backends' 10-30 minute defaults)."""
    from datetime import timedelta

    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DataLoaderConfiguration, InitProcessGroupKwargs, ProjectConfiguration

    # Accelerate keeps one precision per process; a run before this one in the same process
    # (fit() called twice, tests) must not decide this run's.  The process group (PartialState) stays.
    AcceleratorState._reset_state()
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if trainer.mixed_precision is not None and launcher and launcher != trainer.mixed_precision:
        warnings.warn(f"trainer.mixed_precision {trainer.mixed_precision} (the recipe) overrides the launcher's "
                      f"mixed precision {launcher}; leave it out of the recipe to follow the launcher", stacklevel=2)
    if trainer.cpu and os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("false", "0") and torch.cuda.is_available():
        warnings.warn("trainer.cpu true (the recipe) overrides the launcher's GPU setting; leave it out to use the GPUs",
                      stacklevel=2)
    return Accelerator(
        mixed_precision=trainer.mixed_precision,  # None: Accelerate's (launcher, config file), else no
        # Without CUDA, Accelerate sees torchrun's processes as one unless told they run on the CPU.
        cpu=trainer.cpu or (int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()),
        log_with=trackers(trainer) or None,
        # TensorBoard: out/tensorboard/<trainer.project> (the project names the run's folder)
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(RunDir(out).tensorboard)),
        # non_blocking: Accelerate copies each pinned uint8 batch to the GPU while it fetches the next
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, non_blocking=True),
        step_scheduler_with_optimizer=False,
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=trainer.collective_timeout))],
    )


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
        **recipe.optimizer.args,
    )
    split_param_groups(optimizer, list(method.trainable_parameters()), method.param_group_options)
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
    return Run(
        recipe=recipe, plan=plan, registries=registries, accelerator=accelerator, out=out, dataset=parts.dataset,
        views=parts.views.to(device), model=model, method=accelerator.unwrap_model(model), optimizer=optimizer,
        scheduler=scheduler, loader=loader,
        state=TrainState(steps_per_epoch, total_steps, trainer.max_epochs,
                         data_readers=loader.readers if isinstance(loader, StreamLoader) else None),
        global_batch=global_batch, in_chans=parts.in_chans, started=started,
    )
