"""The method contract: what the training loop hands a method, and what a method gives back.

A *method* (SimCLR, SupCon, MoCo, ...) is an ``nn.Module`` registered under the ``methods`` kind.
It owns everything it trains or keeps — backbone, heads, momentum encoders, queues — as
submodules and buffers, so ``state_dict``, DDP and checkpoints see all of it.  The loop knows
nothing else about it; per optimiser step it calls, in this order:

0. ``set_training_length(steps_per_epoch, total_steps)`` once, before the first step (and again
   when a run resumes), on every process: what a method whose settings count in epochs (a layer
   frozen for the first epoch, a queue that starts after N epochs) converts them with.
1. ``forward(views, batch)`` through the Accelerate-prepared module, once per chunk of the step
   (twice per chunk under ``trainer.accumulate`` > 1, with the same RNG state: GradCache replays
   it).  It must be **pure**: read state, write none (BatchNorm running statistics aside, which the
   loop restores between replays: [`Method.stats_buffers`][contrastive.methods.base.Method.stats_buffers]).
2. ``loss(outputs, batch)`` once, over the outputs of *every* chunk of the step concatenated along
   dim 0, so each view of an accumulated batch stays a negative.  It may read queues, never write.
3. ``before_optimizer_step(step, total_steps)`` once per step whose loss is finite, after backward
   (each parameter's ``.grad`` holds the step's gradient, averaged over processes) and before
   gradient clipping and the optimiser step: where a method drops the gradients of parameters it
   keeps still for a while (DINO's last layer in its first epoch).
4. ``after_step(outputs, batch, step, total_steps)`` once per *applied* optimiser step — not for a
   step skipped because its loss was non-finite, nor for one the fp16 gradient scaler skipped —
   with the detached outputs of the whole step: momentum updates and queue pushes go here.

Outputs are ``dict[str, Tensor]`` with the batch's samples along dim 0 (``z`` of shape
``(B, V, D)``, say), so that the loop can split and concatenate chunks, and processes, along dim
0.  Tensors that require grad receive their gradient; the others (momentum keys) are used as
they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from contrastive.errors import DataError, RecipeError

Outputs = dict[str, Tensor]
"""What ``Method.forward`` returns: named tensors, each with the batch's samples along dim 0."""


@dataclass(frozen=True)
class Batch:
    """One step's samples as the loop hands them to a method, all on the training device.

    Attributes:
        images: ``(B, C, H, W)`` uint8, before augmentation (grayscale already expanded to 3
            channels when the backbone takes 3).
        labels: ``(B,)`` int64 class labels; -1 where the data has no label.
        index: ``(B,)`` int64 dataset index of each sample (its identity, e.g. for ids or queues).
        source_aspect: ``(B,)`` float32 original width / height of each image for whole-image
            data (``image_folder`` ``crop: whole``), else None; the view pipeline uses it.
    """

    images: Tensor
    labels: Tensor
    index: Tensor
    source_aspect: Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def slice(self, start: int, stop: int) -> Batch:
        """The samples ``start .. stop - 1`` (views of the same storage, no copy)."""
        aspect = self.source_aspect[start:stop] if self.source_aspect is not None else None
        return replace(self, images=self.images[start:stop], labels=self.labels[start:stop],
                       index=self.index[start:stop], source_aspect=aspect)

    def require_labels(self, method: str) -> Tensor:
        """The labels, or a [`DataError`][contrastive.errors.DataError] when any sample of the batch has none."""
        if bool((self.labels < 0).any()):
            raise DataError(
                f"method '{method}' needs a label for every image, but this batch has "
                f"{int((self.labels < 0).sum())} unlabelled; train it on labelled data (class sub-folders, "
                f"or a dataset with labels) or choose another method with --method.name simclr"
            )
        return self.labels


class Method(nn.Module):
    """Base class of the ``methods`` kind (see the module docstring for the call order).

    Class attributes:
        views: views per image the method expects when the recipe gives one ``augmentation:``
            list (the views are drawn from it independently).  With ``views:`` groups in the
            recipe, [`check_views`][contrastive.methods.base.Method.check_views] decides which counts the method accepts.
        requires_labels: the method needs class labels (SupCon): training refuses data without
            them before the first step.
        conformance_args: recipe args with which the method trains on a tiny dataset (90 images
            in steps of 16, 4 steps): the method conformance suite's fits use them, e.g. a
            queue small enough for ``check_data`` (``{"queue_size": 32}``).  Default: none.
        replayable: ``forward`` can be replayed exactly from the torch RNG state (GradCache,
            ``trainer.accumulate`` > 1).  False for a forward whose randomness torch's RNG does
            not drive: such a method is refused with ``trainer.accumulate`` > 1 before training.
        family: what kind of method it is, shown by ``contrastive list methods`` ("contrastive
            (in-batch negatives)", "negative-free (momentum target)", ...).

    Subclasses set ``self.backbone`` (what evaluation freezes and ``backbone.safetensors``
    holds) and implement [`forward`][contrastive.methods.base.Method.forward] and [`loss`][contrastive.methods.base.Method.loss].
    """

    views: int = 2
    requires_labels: bool = False
    replayable: bool = True
    conformance_args: dict = {}  # noqa: RUF012  read-only: the suite copies it
    family: str = "contrastive"
    backbone: nn.Module
    steps_per_epoch: int | None = None  # set by set_training_length; None outside a run
    total_steps: int | None = None

    def forward(self, views: list[Tensor], batch: Batch) -> Outputs:
        """Embed ``views`` (V tensors ``(B, C, H, W)`` float, in the recipe's group order). Pure."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(views, batch)")

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor | tuple[Tensor, dict[str, float]]:
        """The step's scalar loss over all of the step's outputs, and optional diagnostics to log."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss(outputs, batch)")

    def set_training_length(self, steps_per_epoch: int, total_steps: int) -> None:
        """Called by the loop once before the first step (and again on resume), on every process,
        with the optimiser steps of one epoch and of the whole run.  Default: keeps both as the
        attributes ``steps_per_epoch`` and ``total_steps`` (plain attributes, not state: a resumed
        run is told them again).  Override it to convert settings given in epochs into steps."""
        self.steps_per_epoch = int(steps_per_epoch)
        self.total_steps = int(total_steps)

    def before_optimizer_step(self, step: int, total_steps: int) -> None:
        """Once per step whose loss is finite, after backward and before gradient clipping and the
        optimiser step, on every process; ``step`` as in [`after_step`][contrastive.methods.base.Method.after_step].
        The gradients are complete (every chunk of ``trainer.accumulate``, averaged over processes by
        DDP).  A method may set a parameter's ``.grad`` to None here: the optimiser then leaves that
        parameter, and its optimiser state, untouched this step, and clipping does not count it —
        what DINO's official code does to its last layer in the first epoch.  Dropping a gradient
        here rather than detaching the parameter in ``forward`` keeps every parameter in DDP's
        graph (DDP refuses a parameter that gets no gradient).  Change gradients only, never
        state.  Default: nothing."""

    def after_step(self, outputs: Outputs, batch: Batch, step: int, total_steps: int) -> None:
        """Once per applied optimiser step; ``step`` counts applied and skipped steps, 1-based
        (the ``step`` of metrics.jsonl), out of ``total_steps``.  Default: nothing."""

    def trainable_parameters(self) -> Iterable[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` pairs the optimiser updates.  Default: those that require grad."""
        return [(name, p) for name, p in self.named_parameters() if p.requires_grad]

    def param_group_options(self, name: str, parameter: nn.Parameter) -> dict:
        """Options for the optimizer group of trainable parameter ``name``: ``{}`` (the default)
        keeps the optimizer's own groups; ``{"lr_scale": s}`` trains it at ``s`` × its group's lr
        (Barlow Twins' biases), ``{"fixed_lr": True}`` keeps its lr at the base value while the
        scheduler moves the others' (SimSiam's predictor).  The loop splits the optimizer's groups
        by these options before the scheduler is built (`contrastive.training.lr_groups`)."""
        return {}

    def stats_buffers(self) -> list[Tensor]:
        """Buffers a forward pass may write (BatchNorm running statistics): restored between
        GradCache replays and after a skipped non-finite step.  Default: every buffer of every
        normalisation layer that tracks running statistics."""
        found = []
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
                found.extend(b for b in module.buffers(recurse=False) if b is not None)
        return found

    def check_data(self, num_samples: int, global_batch: int) -> None:
        """Raise [`RecipeError`][contrastive.errors.RecipeError] (or [`DataError`][contrastive.errors.DataError]) before training when the method
        cannot train on ``num_samples`` images in optimiser steps of ``global_batch`` images over
        all processes (a queue larger than the data, say).  Default: any data will do."""

    def check_views(self, counts: Sequence[int]) -> None:
        """Raise [`RecipeError`][contrastive.errors.RecipeError] unless the method can take view groups of ``counts``
        (e.g. ``[2, 6]``: 2 global and 6 local views).  Default: ``views`` views in all."""
        if sum(counts) != self.views:
            raise RecipeError(
                f"{type(self).__name__} takes {self.views} views per image, the recipe's views: groups make "
                f"{sum(counts)} ({' + '.join(map(str, counts))})"
            )


def split_loss(value: Tensor | tuple[Tensor, dict[str, float] | None]) -> tuple[Tensor, dict[str, float]]:
    """A method's ``loss`` result, ``scalar`` or ``(scalar, diagnostics)``, as the pair.

    A method that wraps another's ``loss`` (a subclass calling ``super().loss``) goes through
    this: the built-ins return ``(loss, diagnostics)`` on the steps the loop records
    (`contrastive.diagnostics`) and the bare loss on the others."""
    if isinstance(value, tuple):
        loss, logs = value
        return loss, dict(logs or {})
    return value, {}


def check_method(method: object, name: str) -> Method:
    """The checks a built method must pass before training (its registry entry's contract)."""
    if not isinstance(method, Method):
        raise RecipeError(
            f"method '{name}' built a {type(method).__name__}, not a contrastive.Method (subclass "
            f"contrastive.Method; see docs/methods.md)"
        )
    backbone = getattr(method, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise RecipeError(f"method '{name}' has no backbone module (set self.backbone = backbone in its __init__)")
    if not isinstance(method.views, int) or method.views < 1:
        raise RecipeError(f"method '{name}': views must be a positive int, got {method.views!r}")
    return method


def head_out_dim(head: nn.Module, method: str, what: str) -> int:
    """The head's int ``out_dim`` (what a method sizes its queue or predictor by), or a
    [`RecipeError`][contrastive.errors.RecipeError] saying ``what`` it is for."""
    dim = getattr(head, "out_dim", None)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise RecipeError(f"{method} needs a head with an int attribute out_dim ({what}), "
                          f"{type(head).__name__} has out_dim={dim!r}")
    return dim


def group_by_shape(views: Sequence[Tensor]) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: runs of consecutive views of one shape (multi-crop resolution
    groups), so that each group is embedded in one pass (as DINO's MultiCropWrapper does)."""
    runs: list[tuple[int, int]] = []
    for i, view in enumerate(views):
        if runs and tuple(views[runs[-1][0]].shape) == tuple(view.shape):
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def embed_views(encoder: nn.Module, views: Sequence[Tensor]) -> Tensor:
    """``encoder`` applied to every view, one pass per resolution group: ``(B, V, D)``.

    Within a group the views are concatenated view-major (``torch.cat(views)``), as SimCLR's
    two views always were, so a one-group run computes exactly what one ``encoder(cat)`` does.
    """
    batch = views[0].shape[0]
    parts = []
    for start, stop in group_by_shape(views):
        out = encoder(torch.cat(list(views[start:stop])))
        parts.append(out.reshape(stop - start, batch, *out.shape[1:]).transpose(0, 1))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
