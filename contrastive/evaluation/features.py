"""Images -> features: the one deterministic preprocessing ([`EvalTransform`][contrastive.evaluation.features.EvalTransform]) and the frozen
feature extraction ([`extract_features`][contrastive.evaluation.features.extract_features]) shared by ``fit``'s final evaluation and online
monitor, ``contrastive eval`` and ``contrastive embed``; [`ViewTransform`][contrastive.evaluation.features.ViewTransform], seeded augmented
views for the label-free ``alignment``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from contrastive.components.augmentations.views import ViewPipeline, match_channels
from contrastive.components.datasets.contract import dataset_info
from contrastive.errors import DataError
from contrastive.recipe import Recipe

if TYPE_CHECKING:
    from contrastive.registry import Registries


class EvalTransform:
    """Deterministic eval preprocessing: ``(B, C, H, W)`` uint8 -> float ready for the backbone."""

    def __init__(self, in_chans: int, size: tuple[int, int] | None, normalize: nn.Module | None = None) -> None:
        self.in_chans = in_chans
        self.size = tuple(size) if size is not None else None
        self.normalize = normalize

    @classmethod
    def from_plan(cls, recipe: Recipe, registries: Registries, plan) -> EvalTransform:
        """``size``: the run's view size (its `RunPlan`'s first group);
        ``normalize``: the step of the recipe's first pipeline the plan names, if any."""
        norm = None
        if plan.normalization is not None:
            component = recipe.global_augmentation[plan.normalization.index]
            norm = registries.augmentations.build(component.name, **component.args)
        return cls(recipe.backbone_in_chans, plan.view_size, norm)

    @classmethod
    def from_recipe(cls, recipe: Recipe, registries: Registries, sample: torch.Tensor) -> EvalTransform:
        """Without a plan: ``size``: what the recipe's view pipeline makes of ``sample`` (a
        ``(C, H, W)`` image); ``normalize``: its normalisation step (`is_normalization`),
        if any.  The global RNG is left untouched."""
        from contrastive.plan import normalization_of, view_sizes

        in_chans = recipe.backbone_in_chans
        steps = [registries.augmentations.build(a.name, **a.args) for a in recipe.global_augmentation]
        (size,) = view_sizes([ViewPipeline(steps)], match_channels(sample[None], in_chans)[0])
        norm = normalization_of(steps)
        return cls(in_chans, size, steps[norm.index] if norm is not None else None)

    def __call__(self, images: torch.Tensor, *, backbone_input: bool = True) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
        if not backbone_input:  # raw pixels: no channel repeat, no normalisation
            return x
        x = match_channels(x, self.in_chans)
        if self.normalize is not None:
            x = self.normalize(x)
        return x


class ViewTransform:
    """Augmented eval input: ``(B, C, H, W)`` uint8 -> the recipe's first view pipeline's views
    (``normalize`` included when the recipe has it), for the label-free ``alignment``.

    [`seeded`][contrastive.evaluation.features.ViewTransform.seeded] gives a copy whose every call draws from a generator seeded once at the start
    of an extraction pass, so that a pass is reproducible (the same views for the learned backbone
    and each baseline) and the global RNG of training is left untouched.  A batch's views depend on
    the batches before it, so a pass is not split across processes (``shardable``)."""

    shardable = False

    def __init__(self, pipeline: ViewPipeline, in_chans: int, size: tuple[int, int] | None = None,
                 seed: int | None = None) -> None:
        self.pipeline, self.in_chans, self.seed = pipeline, in_chans, seed
        self.size = tuple(size) if size is not None else None  # views of another size are resized to it
        self._state: torch.Tensor | None = None

    @classmethod
    def from_recipe(cls, recipe: Recipe, registries: Registries, size: tuple[int, int] | None = None) -> ViewTransform:
        steps = [registries.augmentations.build(a.name, **a.args) for a in recipe.global_augmentation]
        return cls(ViewPipeline(steps), recipe.backbone_in_chans, size)

    def seeded(self, seed: int) -> ViewTransform:
        """A fresh copy drawing its views from ``seed`` (the first call seeds, later calls continue)."""
        return ViewTransform(self.pipeline, self.in_chans, self.size, seed)

    def __call__(self, images: torch.Tensor, *, backbone_input: bool = True) -> torch.Tensor:
        """``(B, C, H, W)`` uint8 -> ``(B, in_chans, *size)`` float views (raw pixels the same)."""
        with torch.random.fork_rng(devices=[]):  # augmentations draw on the CPU generator
            if self._state is None:
                torch.manual_seed(self.seed if self.seed is not None else 0)
            else:
                torch.set_rng_state(self._state)
            x = self.pipeline.to(images.device)(match_channels(images, self.in_chans))  # as training draws them
            self._state = torch.get_rng_state()
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return x


def _batches(dataset, batch_size: int, order):
    """``(images uint8 (B,C,H,W), labels (B,))`` of the samples ``order`` names, in order, without a
    DataLoader (no RNG use)."""
    info = dataset_info(dataset)
    for start in range(0, len(order), batch_size):
        idx = list(order[start : start + batch_size])
        if info.images is not None and info.labels is not None:
            yield info.images[idx], torch.as_tensor(info.labels)[idx]
        else:
            items = [dataset[i] for i in idx]
            yield torch.stack([im for im, _ in items]), torch.as_tensor([int(y) for _, y in items])


def shard(count: int, batch_size: int, processes: int, rank: int) -> range:
    """The positions ``[start, stop)`` of ``count`` samples that process ``rank`` of ``processes``
    extracts: a contiguous run of whole batches of ``batch_size`` (the processes' runs, in rank
    order, cover every position once; no padding).  Whole batches, so that each forward pass sees
    exactly the batch one process would have run: the gathered features are bit for bit those of
    one process (a batch of another size may round differently).  With fewer batches than
    processes, some shards are empty."""
    batches = -(-count // batch_size)
    first, last = batches * rank // processes, batches * (rank + 1) // processes
    return range(min(count, first * batch_size), min(count, last * batch_size))


@torch.no_grad()
def extract_features(
    backbone: nn.Module | None,
    dataset,
    transform: EvalTransform,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    indices: list[int] | None = None,
    group=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen features ``(N, num_features)`` float32 and labels ``(N,)`` int64 on the CPU, of the
    samples ``indices`` (None: all) in order.

    ``backbone=None`` gives the raw-pixel baseline: the flattened preprocessed pixels.  The
    backbone runs in eval mode and is put back in the mode it was in; nothing is trained.

    ``group`` ([`evaluation_group`][contrastive.distributed.evaluation_group]; None: this process alone): every
    process of it must call this with the same arguments; each extracts its `shard` on its
    own ``device`` and every process returns all ``N`` rows, exactly (bit for bit on the CPU) those
    one process would have produced.  A transform drawing from one generator across batches
    ([`ViewTransform`][contrastive.evaluation.features.ViewTransform], ``shardable = False``) cannot be split: every process then extracts
    everything itself (the same draws, the same result).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    order = indices if indices is not None else range(len(dataset))
    split = group is not None and getattr(transform, "shardable", True)
    if split:
        import torch.distributed as dist

        mine = shard(len(order), batch_size, dist.get_world_size(group), dist.get_rank(group))
        order = order[mine.start : mine.stop]
    was_training = backbone.training if backbone is not None else False
    if backbone is not None:
        backbone.eval()
    feats, labels = [], []
    try:
        for images, y in _batches(dataset, batch_size, order):
            x = transform(images.to(device), backbone_input=backbone is not None)
            out = backbone(x) if backbone is not None else x.flatten(1)
            feats.append(out.float().cpu())
            labels.append(y.long())
    finally:
        if backbone is not None:
            backbone.train(was_training)
    if split:
        from contrastive.distributed import gather_rows

        mine_x = torch.cat(feats) if feats else torch.empty(0, 0)
        mine_y = torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)
        feats, labels = [gather_rows(mine_x, group)], [gather_rows(mine_y, group)]
    if not feats or not len(feats[0]):
        raise DataError("evaluation data is empty")
    return torch.cat(feats), torch.cat(labels)
