"""The device side of a run: its Accelerator (precision, device, trackers, the collective
timeout), SyncBatchNorm, channels-last and ``torch.compile``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from contrastive.components.augmentations.views import Views
from contrastive.errors import RecipeError
from contrastive.methods.base import Method
from contrastive.recipe import TrainerConfig
from contrastive.storage.run_dir import RunDir

if TYPE_CHECKING:
    from accelerate import Accelerator


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
