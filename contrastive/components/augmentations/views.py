"""Views: what the loop makes of a uint8 batch before a method embeds it.

* `ViewPipeline`: one recipe ``augmentation:`` list, applied batched on the training
  device without gradient tracking;
* `Views`: the recipe's view *groups* (``views: [{count, augmentation}, ...]``; the old
  ``augmentation:`` key is one group of the method's ``views``, 2 for SimCLR), drawn in order:
  e.g. 2 global views at 224 px, then 6 local ones at 96 px (multi-crop, Caron et al. 2020);
* `match_channels`: grayscale data for a 3-channel backbone.

Evaluation runs the first group's pipeline to know the image size the backbone was trained on.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn

from contrastive.errors import InvalidArgumentsError


def match_channels(images: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Grayscale ``(B,1,H,W)`` -> ``(B,3,H,W)`` (a view, no copy) for a 3-channel backbone; else as is."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 and in_chans == 3 else images


#: On the CPU the pipeline runs in chunks of about this many bytes of float views, so that the
#: intermediate tensors of every step stay in cache (and below glibc's mmap threshold: a fresh
#: 77 MB tensor per step costs page faults).  docs/performance.md has the measurement.
CPU_CHUNK_BYTES = 4 << 20


def _takes_source_aspect(step: nn.Module) -> bool:
    try:
        return "source_aspect" in inspect.signature(step.forward).parameters
    except (TypeError, ValueError):
        return False


class ViewPipeline(nn.Module):
    """The recipe's augmentation list, applied in order, without gradient tracking.

    ``forward(x, source_aspect=None)``: ``(B, C, H, W)`` uint8 or float in [0, 1] -> float views.
    uint8 input is divided by 255 on its device; on the CPU, leading steps that declare
    ``accepts_uint8`` (crop, flip) run on the uint8 images first, and the batch is processed in
    chunks of about `CPU_CHUNK_BYTES`.  ``source_aspect`` (``(B,)``, the original
    width / height of whole images squashed to H x W) goes to the steps whose ``forward`` takes
    it (``random_resized_crop``).  ``draw(x, count)`` draws ``count`` independent views of every sample.
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.steps = nn.ModuleList(modules)
        self._aspect_steps = [_takes_source_aspect(s) for s in self.steps]

    @staticmethod
    def to_float(x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"augmentation pipeline expects a (B, C, H, W) batch, got {got}")
        if x.dtype == torch.uint8:  # contiguous: the colour steps view pixels as (B, C, H*W)
            return x.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
        if not x.is_floating_point():
            raise ValueError(f"augmentation pipeline expects uint8 or float images, got {x.dtype}")
        return x

    def _run(self, x: torch.Tensor, source_aspect: torch.Tensor | None) -> torch.Tensor:
        uint8_ok = x.device.type == "cpu"
        for step, takes_aspect in zip(self.steps, self._aspect_steps, strict=True):
            if x.dtype == torch.uint8 and not (uint8_ok and getattr(step, "accepts_uint8", False)):
                x = self.to_float(x)
            x = step(x, source_aspect=source_aspect) if takes_aspect else step(x)
        return self.to_float(x)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, source_aspect: torch.Tensor | None = None) -> torch.Tensor:
        self.to_float(x[:0])  # shape and dtype check only
        if source_aspect is not None:
            if not any(self._aspect_steps):
                raise InvalidArgumentsError(
                    "the dataset delivers whole images squashed to a square (image_folder crop: whole), but the "
                    "augmentation list has no random_resized_crop to undo the squash; add one, or set "
                    "--data.args.crop center"
                )
            source_aspect = source_aspect.detach().to("cpu", torch.float32).reshape(-1)
        batch = x.shape[0]
        per_view = 4 * x[0].numel()
        chunk = batch if x.device.type != "cpu" else max(1, CPU_CHUNK_BYTES // max(per_view, 1))
        if chunk >= batch:
            return self._run(x, source_aspect)
        out = None
        for start in range(0, batch, chunk):
            aspect = source_aspect[start : start + chunk] if source_aspect is not None else None
            views = self._run(x[start : start + chunk], aspect)
            if out is None:
                out = views.new_empty(batch, *views.shape[1:])
            out[start : start + chunk] = views
        return out

    @torch.no_grad()
    def draw(self, x: torch.Tensor, count: int, source_aspect: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``count`` independently augmented views of every sample of ``x``, in a list.

        One pass over ``torch.cat([x] * count)``, split in ``count``: every sample of the
        repeated batch gets its own random parameters, so the views are independent.
        """
        batch = x.shape[0]
        if source_aspect is not None:
            source_aspect = source_aspect.detach().to("cpu", torch.float32).reshape(-1)
            source_aspect = torch.cat([source_aspect] * count)
        views = self(torch.cat([x] * count), source_aspect=source_aspect)
        return [views[k * batch : (k + 1) * batch] for k in range(count)]

    def two_views(
        self, x: torch.Tensor, source_aspect: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``draw(x, 2)`` as a pair ``(view_a, view_b)``."""
        view_a, view_b = self.draw(x, 2, source_aspect)
        return view_a, view_b

    def __len__(self) -> int:
        return len(self.steps)


class Views(nn.Module):
    """The recipe's view groups: ``forward(images)`` -> a list of V float views, group by group.

    Args:
        groups: ``(count, pipeline)`` per group, in recipe order; group 0 holds the views the
            backbone is fitted and evaluated at (the global views of multi-crop).
    """

    def __init__(self, groups: Sequence[tuple[int, ViewPipeline]]) -> None:
        super().__init__()
        if not groups:
            raise InvalidArgumentsError("a recipe needs at least one view group")
        self.counts = [int(count) for count, _ in groups]
        self.pipelines = nn.ModuleList([pipeline for _, pipeline in groups])
        self.channels_last = False  # trainer.channels_last: views leave as NHWC

    @property
    def total(self) -> int:
        """Views per image, over all groups."""
        return sum(self.counts)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, source_aspect: torch.Tensor | None = None) -> list[torch.Tensor]:
        views: list[torch.Tensor] = []
        for count, pipeline in zip(self.counts, self.pipelines, strict=True):
            views.extend(pipeline.draw(images, count, source_aspect))
        if self.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        return views
