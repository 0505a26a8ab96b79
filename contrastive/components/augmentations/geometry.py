"""Geometric augmentations: random resized crop and horizontal flip (torchvision v2's
``_geometry.py``).

Both take a ``(B, C, H, W)`` float batch in [0, 1] or, on the CPU, uint8 (``accepts_uint8``:
the view pipeline hands them uint8 images, 4x less memory traffic), and draw their parameters
per sample on the CPU.  [`sample_crop_boxes`][contrastive.components.augmentations.geometry.sample_crop_boxes] is torchvision's ``RandomResizedCrop.get_params``,
vectorised; the resizing kernels are in [`functional`][contrastive.components.augmentations.functional].
"""

from __future__ import annotations

import math

import torch
from torch import nn

from contrastive.components.augmentations.contract import _check_images, _check_pair, _check_prob, _per_sample_gate
from contrastive.components.augmentations.functional import _batched_crop_resize, _per_sample_crop_resize
from contrastive.errors import InvalidArgumentsError

__all__ = ["HorizontalFlip", "RandomResizedCrop", "sample_crop_boxes"]


def sample_crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    source_aspect: torch.Tensor | None = None,
    tries: int = 10,
) -> tuple[torch.Tensor, ...]:
    """Random-resized-crop boxes ``(x1, x2, y1, y2)``, each a ``(batch,)`` int64 CPU tensor of
    pixel bounds ``[x1, x2) x [y1, y2)`` in an ``height x width`` image.

    torchvision's ``RandomResizedCrop.get_params``, vectorised over the batch: area fraction
    ~ U(scale), log aspect ratio (width / height) ~ U(log ratio), ``tries`` attempts per sample,
    then a centre crop with the ratio clamped into range.  With ``source_aspect`` (``(batch,)``,
    the original width / height of each image that was squashed to ``height x width``), area and
    aspect ratio are drawn in the ORIGINAL image's geometry and the box is mapped into the
    squashed one: the views have the paper's distribution over the whole original image.
    """
    canvas_aspect = width / height
    if source_aspect is None:
        aspect = torch.full((batch,), canvas_aspect, dtype=torch.float64)
    else:
        aspect = source_aspect.detach().to("cpu", torch.float64).reshape(batch)
    # Box sides as fractions of the (original) image's width and height: w_f * h_f = area,
    # (w_f * aspect) / h_f = ratio.
    area = torch.empty(batch, tries, dtype=torch.float64).uniform_(*scale)
    log_r = torch.empty(batch, tries, dtype=torch.float64).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    r = log_r.exp()
    w_f = (area * r / aspect[:, None]).sqrt()
    h_f = (area * aspect[:, None] / r).sqrt()
    ok = (w_f <= 1.0) & (h_f <= 1.0)
    first = torch.where(ok.any(1), ok.to(torch.int8).argmax(1), torch.full((batch,), -1))
    found = first >= 0
    pick = first.clamp(min=0)[:, None]
    w_f, h_f = w_f.gather(1, pick)[:, 0], h_f.gather(1, pick)[:, 0]
    # Fallback (no try fitted): the largest centred box whose ratio is clamped into range.
    lo, hi = ratio
    fb_w = torch.where(aspect > hi, hi / aspect, torch.ones_like(aspect))
    fb_h = torch.where(aspect < lo, aspect / lo, torch.ones_like(aspect))
    w_f, h_f = torch.where(found, w_f, fb_w), torch.where(found, h_f, fb_h)
    crop_w = (w_f * width).round().clamp(1, width).to(torch.long)
    crop_h = (h_f * height).round().clamp(1, height).to(torch.long)
    # Position: uniform over the valid offsets (torchvision's randint), centred for the fallback.
    u = torch.rand(batch, 2, dtype=torch.float64)
    x1 = torch.where(found, (u[:, 0] * (width - crop_w + 1)).floor().to(torch.long), (width - crop_w) // 2)
    y1 = torch.where(found, (u[:, 1] * (height - crop_h + 1)).floor().to(torch.long), (height - crop_h) // 2)
    x1, y1 = x1.clamp(0, width - 1), y1.clamp(0, height - 1)
    return x1, x1 + crop_w, y1, y1 + crop_h


class RandomResizedCrop(nn.Module):
    """Crop a random area fraction and aspect ratio, resize to ``size`` (torchvision semantics).

    ``(B, C, H, W) -> (B, C, *size)``, float in [0, 1] or (on the CPU) uint8, which stays uint8.
    Per sample: area fraction ~ U(scale), log aspect ratio (width / height) ~ U(log ratio), ten
    tries then a centre crop, as torchvision's ``RandomResizedCrop.get_params``
    ([`sample_crop_boxes`][contrastive.components.augmentations.geometry.sample_crop_boxes]); bilinear resize, ``align_corners=False``, antialiased when
    shrinking.  A sample left out by ``p`` is the whole image resized to ``size``.

    ``forward(x, source_aspect=None)``: ``source_aspect`` (``(B,)``) gives each sample's original
    width / height when ``x`` holds whole images squashed to ``H x W`` (``image_folder`` with
    ``crop: whole``); boxes are then drawn in the original geometry.
    """

    accepts_uint8 = True  # the view pipeline may hand it uint8 images on the CPU (4x less memory traffic)

    def __init__(
        self,
        size: int | tuple[int, int],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        p: float = 1.0,
    ) -> None:
        super().__init__()
        where = "random_resized_crop"
        if isinstance(size, int) and not isinstance(size, bool):
            size = (size, size)
        if not (
            isinstance(size, (list, tuple))
            and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
        ):
            raise InvalidArgumentsError(f"{where}: size must be a positive int or a pair [h, w] of them, got {size!r}")
        self.size = (int(size[0]), int(size[1]))
        self.scale = _check_pair(where, "scale", scale, 0.0, 1.0, strict_low=True)
        self.ratio = _check_pair(where, "ratio", ratio, 0.0, strict_low=True)
        self.p = _check_prob(where, p)

    def forward(self, x: torch.Tensor, source_aspect: torch.Tensor | None = None) -> torch.Tensor:
        _check_images("random_resized_crop", x, allow_uint8=x.device.type == "cpu")
        batch, channels, height, width = x.shape
        if batch == 0:
            return x.new_empty(batch, channels, *self.size)
        if source_aspect is not None and source_aspect.numel() != batch:
            raise ValueError(f"random_resized_crop: source_aspect has {source_aspect.numel()} values for {batch} images")
        x1, x2, y1, y2 = sample_crop_boxes(batch, height, width, self.scale, self.ratio, source_aspect)
        left_out = torch.ones(batch, dtype=torch.bool)
        left_out[_per_sample_gate(batch, self.p)] = False
        if left_out.any():  # the whole image
            x1[left_out], x2[left_out], y1[left_out], y2[left_out] = 0, width, 0, height
        if x.device.type == "cpu":
            return _per_sample_crop_resize(x, x1, x2, y1, y2, self.size)
        # On an accelerator, crops not larger than the output (the common case) are resized in one
        # batched pass: a fixed handful of kernels instead of a few per view.
        shrinks = (y2 - y1 > self.size[0]) | (x2 - x1 > self.size[1])
        if not shrinks.any():
            return _batched_crop_resize(x, x1, x2, y1, y2, self.size)
        if shrinks.all():
            return _per_sample_crop_resize(x, x1, x2, y1, y2, self.size)
        big = shrinks.nonzero().flatten()  # shrinking crops need antialias: per-sample path
        small = (~shrinks).nonzero().flatten()
        out = x.new_empty(batch, channels, *self.size)
        big_dev, small_dev = big.to(x.device, non_blocking=True), small.to(x.device, non_blocking=True)
        out[big_dev] = _per_sample_crop_resize(x[big_dev], x1[big], x2[big], y1[big], y2[big], self.size)
        out[small_dev] = _batched_crop_resize(x[small_dev], x1[small], x2[small], y1[small], y2[small], self.size)
        return out

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, ratio={self.ratio}, p={self.p}"


class HorizontalFlip(nn.Module):
    """Mirror left-right with per-sample probability ``p``.

    ``(B, C, H, W) -> (B, C, H, W)``, float or (on the CPU) uint8; only the chosen samples are
    touched (a copy of ``x`` with their rows reversed).
    """

    accepts_uint8 = True

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _check_prob("horizontal_flip", p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images("horizontal_flip", x, allow_uint8=x.device.type == "cpu")
        out = x.clone()
        chosen = _per_sample_gate(x.shape[0], self.p)
        if chosen.numel():
            rows = chosen.to(x.device, non_blocking=True)
            out[rows] = x[rows].flip(-1)
        return out

    def extra_repr(self) -> str:
        return f"p={self.p}"
