"""Built-in image augmentations (SimCLR, Chen et al., 2020, arXiv:2002.05709, appendix A).

These are this package's own batched ops, not Kornia's augmentation modules: each draws its
random parameters per sample and transforms the whole batch in a few tensor ops on the training
device.  Kornia supplies the colour functions they call (``kornia.enhance``'s
torchvision-compatible brightness, contrast, saturation, solarize and normalize).  The
distributions are torchvision's (``tests/components/test_augmentation_distributions.py``);
why Kornia's modules are not used as they are is listed below.

Every augmentation is an ``nn.Module`` built from its recipe arguments whose forward takes a
``(B, C, H, W)`` float batch in [0, 1] on any device and returns a batch of the same shape
(``random_resized_crop`` returns its ``size``), still in [0, 1] (except ``normalize``).
Random parameters are drawn afresh for every sample and ``p`` is a per-sample probability.
C = 3 is the main case; C = 1 (grayscale data) is accepted too: colour jitter then applies only
brightness and contrast, and ``grayscale`` is the identity.

Random parameters are drawn on the CPU from torch's global generator, so the image ops never
wait on the device and the parameters never depend on pixel values.

How the ops are built, and why (Kornia 0.9 and torchvision 0.29, read in their sources and
measured; docs/performance.md has the numbers):

* ``kornia.augmentation.ColorJitter`` uses torchvision's formulas but draws ONE random order of
  the four steps per call, shared by the whole batch, and its HSV hue dominated the CPU profile.
  ``color_jitter`` draws a permutation per sample and, by default (``mode: sequential``), applies
  torchvision's four steps in that order, each clamped, through Kornia's torchvision-compatible
  ``kornia.enhance`` functions, and the HSV hue shift in closed form (a quarter of the cost of
  Kornia's RGB -> HSV -> RGB): torchvision's ``ColorJitter`` distribution, as the paper used.  ``mode: twist`` (opt-in) composes the four steps into one
  per-sample colour matrix applied by a single batched matrix product (NVIDIA DALI's colour
  twist): cheaper, but a different distribution (YIQ hue, one clamp at the end).
* ``kornia.augmentation.RandomResizedCrop``'s ``p`` is a *batch* probability, its default
  ``align_corners=True`` differs from torchvision, and it cannot draw boxes in the geometry of
  an original image that was squashed to a square; :func:`sample_crop_boxes` draws torchvision's
  boxes (vectorised), and the crop is a slice plus ``F.interpolate`` (uint8 on the CPU).
* ``RandomSolarize(thresholds=0.1)`` draws the threshold from 0.5 ± 0.1 and adds a random
  brightness shift; a fixed threshold needs ``thresholds=(t, t), additions=(0, 0)``, and the
  module costs about twice the plain ``kornia.enhance.solarize`` on the CPU, which we use.
* Kornia's ``RandomGaussianBlur`` filters through ``filter2d``; two grouped 1-D convolutions
  with a kernel per image plane give the same result a third cheaper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import kornia.enhance as KE
import torch
import torch.nn.functional as F
from torch import nn

from contrastive import hookimpl
from contrastive.errors import InvalidArgumentsError

__all__ = [
    "ColorJitter",
    "GaussianBlur",
    "Grayscale",
    "HorizontalFlip",
    "Normalize",
    "RandomResizedCrop",
    "Solarize",
]


# -- argument checks ---------------------------------------------------------------------------
def _check_prob(where: str, p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise InvalidArgumentsError(f"{where}: p must be in [0, 1], got {p!r}")
    return float(p)


def _check_pair(
    where: str, arg: str, value: object, low: float = -math.inf, high: float = math.inf, strict_low: bool = False
) -> tuple[float, float]:
    """A (lo, hi) pair of numbers (tuple or YAML list) with low <= lo <= hi <= high."""
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
    if ok:
        lo, hi = float(value[0]), float(value[1])
        ok = (lo > low if strict_low else lo >= low) and lo <= hi <= high
    if not ok:
        bound = f"{'>' if strict_low else '>='} {low:g}" if low > -math.inf else ""
        upper = f" and <= {high:g}" if high < math.inf else ""
        raise InvalidArgumentsError(
            f"{where}: {arg} must be a pair [lo, hi] with lo <= hi{', lo ' + bound if bound else ''}{upper}, "
            f"got {value!r}"
        )
    return lo, hi


def _check_images(where: str, x: torch.Tensor, allow_uint8: bool = False) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not (x.is_floating_point() or allow_uint8 and x.dtype == torch.uint8):
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{where} expects a (B, C, H, W) float batch in [0, 1], got {got}")


def _per_sample_gate(batch: int, p: float) -> torch.Tensor:
    """CPU indices of the samples that an augmentation with probability ``p`` applies to."""
    if p >= 1.0:
        return torch.arange(batch)
    if p <= 0.0:
        return torch.empty(0, dtype=torch.long)
    return (torch.rand(batch) < p).nonzero().flatten()


# -- geometric -------------------------------------------------------------------------------
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
    (:func:`sample_crop_boxes`); bilinear resize, ``align_corners=False``, antialiased when
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


def _per_sample_crop_resize(
    x: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Slice each box and ``F.interpolate`` it to ``size`` (bilinear, ``align_corners=False``,
    antialiased where it shrinks), one sample at a time: on the CPU this reads only the crop.
    uint8 RGB(A) images take PyTorch's vectorised uint8 resampling kernels, which want
    channels-last crops and output (as torchvision v2 does); the result is then channels-last."""
    uint8_fast = x.dtype == torch.uint8 and x.shape[1] in (3, 4)
    layout = torch.channels_last if uint8_fast else torch.contiguous_format
    out = torch.empty(x.shape[0], x.shape[1], *size, dtype=x.dtype, device=x.device, memory_format=layout)
    boxes = torch.stack([y1, y2, x1, x2], 1).tolist()
    for i, (top, bottom, left, right) in enumerate(boxes):
        crop = x[i : i + 1, :, top:bottom, left:right]
        if (bottom - top, right - left) == size:
            out[i : i + 1] = crop
            continue
        if uint8_fast:
            crop = crop.contiguous(memory_format=torch.channels_last)
        shrinks = bottom - top > size[0] or right - left > size[1]  # antialias changes nothing otherwise
        out[i : i + 1] = F.interpolate(crop, size=size, mode="bilinear", align_corners=False, antialias=shrinks)
    return out if x.dtype == torch.uint8 else out.clamp_(0.0, 1.0)


def _source_index(start: torch.Tensor, length: torch.Tensor, out_len: int) -> tuple[torch.Tensor, ...]:
    """Bilinear source rows (or columns) for resizing ``[start, start + length)`` to ``out_len``
    pixels, ``align_corners=False``, with PyTorch's own index arithmetic (``upsample_bilinear2d``):
    ``(lo, hi, weight_of_hi)``, each ``(B, out_len)``, indices into the whole image."""
    scale = length.to(torch.float32) / out_len
    src = ((torch.arange(out_len, dtype=torch.float32) + 0.5) * scale[:, None] - 0.5).clamp_(min=0.0)
    lo = src.to(torch.long)  # floor: src >= 0
    lo = torch.minimum(lo, (length - 1)[:, None])
    hi = lo + (lo < (length - 1)[:, None]).to(torch.long)
    weight = (src - lo).clamp_(0.0, 1.0)
    return lo + start[:, None], hi + start[:, None], weight


def _batched_crop_resize(
    x: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Crop box ``[y1, y2) x [x1, x2)`` of each sample and resize it to ``size`` (bilinear,
    ``align_corners=False``) in one batched, separable pass: two row selections along H, two along W.

    Equal (up to float rounding) to slicing each crop and ``F.interpolate``-ing it, which is what
    ``crop_by_indices`` does one sample at a time; without antialias, so only for crops no larger
    than ``size`` (enlarging, where antialias is a no-op).  Index arithmetic runs on the CPU
    (the boxes live there), so the device sees a fixed handful of kernels, whatever B is.
    """
    batch, channels, height, width = x.shape
    out_h, out_w = size
    dev = x.device
    ylo, yhi, wy = (t.to(dev, non_blocking=True) for t in _source_index(y1, y2 - y1, out_h))
    xlo, xhi, wx = (t.to(dev, non_blocking=True) for t in _source_index(x1, x2 - x1, out_w))
    planes = torch.arange(batch * channels, device=dev).view(batch, channels, 1)  # (b, c) image planes
    # index_select over flattened rows: 4-6x faster than gather with an expanded index on the CPU.
    flat = x.contiguous().view(-1, width)
    top = flat.index_select(0, (planes * height + ylo[:, None, :]).view(-1))
    bottom = flat.index_select(0, (planes * height + yhi[:, None, :]).view(-1))
    rows = torch.lerp(top, bottom, wy.to(x.dtype).repeat_interleave(channels, 0).view(-1, 1))  # (B*C*out_h, W)
    cols = rows.view(batch * channels, out_h, width).transpose(1, 2).reshape(-1, out_h)  # (B*C*W, out_h)
    left = cols.index_select(0, (planes * width + xlo[:, None, :]).view(-1))
    right = cols.index_select(0, (planes * width + xhi[:, None, :]).view(-1))
    out = torch.lerp(left, right, wx.to(x.dtype).repeat_interleave(channels, 0).view(-1, 1))  # (B*C*out_w, out_h)
    return out.view(batch, channels, out_w, out_h).transpose(2, 3).contiguous().clamp_(0.0, 1.0)


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


# -- colour ----------------------------------------------------------------------------------
def _brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return KE.adjust_brightness_accumulative(x, f)  # x * f, clamped (torchvision)


def _contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return KE.adjust_contrast_with_mean_subtraction(x, f)  # blend with the grayscale mean (torchvision)


def _saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return KE.adjust_saturation_with_gray_subtraction(x, f)  # blend with the grayscale (torchvision)


#: Per output channel (R, G, B), the offset n of the HSV -> RGB formula ``k = (n + 6 h) mod 6``.
_HSV_OFFSETS = (5.0, 3.0, 1.0)


def _hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_hue`` for a ``(n, 3, H, W)`` batch in [0, 1], shift ``f`` ``(n,)`` in
    turns of the hue circle: to HSV, hue + f (mod 1), back to RGB (equal to torchvision's to ~1e-6).

    Written out instead of ``kornia.enhance.adjust_hue`` (RGB -> HSV -> RGB, which was most of the
    exact jitter's CPU time): a shift keeps V = max and the chroma max - min, so each output
    channel is ``max - chroma * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 h') mod 6`` (the
    closed form of HSV -> RGB), about a quarter of Kornia's cost on the CPU."""
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    # hue in sixths of a turn, times chroma; ties resolved as torchvision's _rgb2hsv (r, then g, then b)
    sixths = torch.where(
        maxc == r, g - b, torch.where(maxc == g, (b - r).add_(chroma, alpha=2), (r - g).add_(chroma, alpha=4))
    )
    sixths = sixths.div_(chroma.clamp(min=1e-12)).add_((6 * f).view(-1, 1, 1))  # gray pixels: chroma 0, any hue
    offsets = torch.tensor(_HSV_OFFSETS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(sixths[:, None] + offsets, 6.0)
    weight = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return torch.addcmul(maxc[:, None], chroma[:, None], weight, value=-1.0)


#: ITU-R 601 luma weights: torchvision's ``rgb_to_grayscale`` (grayscale, contrast, saturation).
_LUMA = (0.299, 0.587, 0.114)
#: RGB -> YIQ (NTSC); hue is a rotation of the (I, Q) chroma plane about the luma axis.
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.595716, -0.274453, -0.321263), (0.211456, -0.522591, 0.311135))


def colour_twist(order: torch.Tensor, factors: torch.Tensor, channels: int) -> tuple[torch.Tensor, ...]:
    """Per-sample affine colour map that applies brightness, contrast, saturation and hue
    (indices 0-3) in each sample's ``order``, without clamping in between.

    ``order``: ``(n, 4)`` permutations; ``factors``: ``(4, n)`` (hue in turns of the circle);
    ``channels``: C in {1, 3}.  Returns float64 CPU tensors ``A`` ``(n, C, C)``, ``t`` ``(n, C)``
    and ``K`` ``(n, C, C)``: the map is ``y = A x + t + K mean(x)``, with ``mean(x)`` the ``(C,)``
    per-channel means of the input.  Contrast blends with the mean gray level of the image as it
    is at that step, which is linear in the input's channel means; carrying that through ``K``
    keeps the parameters independent of the pixels, so they are built on the CPU and the device
    never waits.  Brightness ``f x``, contrast ``f x + (1 - f) mean(gray(x))``, saturation
    ``f x + (1 - f) gray(x)`` are torchvision's formulas; hue rotates the chroma of YIQ (NVIDIA
    DALI's hue), which keeps luma where torchvision's HSV hue keeps the max and min channel.
    Without the intermediate clamps these four maps commute (saturation and hue keep gray gray
    and keep luma), so in this form the order only matters through the final clamp.
    """
    n = order.shape[0]
    dtype = torch.float64
    luma = torch.tensor(_LUMA if channels == 3 else (1.0,), dtype=dtype)
    eye = torch.eye(channels, dtype=dtype).expand(n, channels, channels)
    f = factors.to(dtype)
    if channels == 3:
        yiq = torch.tensor(_RGB_TO_YIQ, dtype=dtype)
        angle = f[3] * (-2 * math.pi)  # this sign turns hue the way torchvision's positive shift does
        rot = torch.zeros(n, 3, 3, dtype=dtype)
        rot[:, 0, 0] = 1.0
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = angle.cos(), -angle.sin(), angle.sin(), angle.cos()
        hue = torch.linalg.inv(yiq) @ rot @ yiq
        saturation = f[2][:, None, None] * eye + (1 - f[2])[:, None, None] * luma.expand(channels, -1)
    else:  # one channel: saturation and hue are the identity (torchvision skips them)
        hue = saturation = eye
    ones = torch.ones(n, dtype=dtype)
    A, K = eye.clone(), torch.zeros(n, channels, channels, dtype=dtype)
    t = torch.zeros(n, channels, dtype=dtype)
    for position in range(4):
        op = order[:, position]
        # Every op as x -> M x + offset, for all samples; each sample takes its own op.
        M = torch.where(op == 0, f[0], torch.where(op == 1, f[1], ones))[:, None, None] * eye
        M = torch.where((op == 2)[:, None, None], saturation, M)
        M = torch.where((op == 3)[:, None, None], hue, M)
        blend = torch.where(op == 1, 1 - f[1], torch.zeros(n, dtype=dtype))  # contrast's (1 - f)
        # mean gray of the current image = luma . (A mean + t + K mean)
        gray_t = t @ luma
        gray_k = luma @ (A + K)  # (n, C): the row that multiplies mean(x)
        A = M @ A
        t = (M @ t[:, :, None])[:, :, 0] + (blend * gray_t)[:, None]
        K = M @ K + (blend[:, None] * gray_k)[:, None, :].expand(n, channels, channels)
    return A, t, K


class ColorJitter(nn.Module):
    """Random brightness, contrast, saturation and hue, in a random order per sample.

    ``(B, C, H, W) -> (B, C, H, W)``, C = 3 (or C = 1: brightness and contrast only).
    torchvision ``ColorJitter`` ranges: a number ``b`` draws the factor uniformly from
    ``[max(0, 1 - b), 1 + b]`` (the same for contrast and saturation), ``hue = h`` draws the shift
    from ``[-h, h]`` (h <= 0.5); a pair ``[lo, hi]`` gives the range itself.  As in the SimCLR
    paper (and torchvision), the four operations are applied in a random order, drawn here
    independently for every sample (Kornia's ``ColorJitter`` shares one order per batch).

    ``mode``:

    * ``"sequential"`` (default): torchvision's ``ColorJitter`` exactly, the distribution the
      SimCLR paper trained with: each step applied and clamped to [0, 1] in turn (Kornia's
      torchvision-compatible ``kornia.enhance`` functions), hue shifted in HSV (:func:`_hue`).
      ``tests/components/test_augmentation_distributions.py`` holds its output distribution to
      torchvision's.
    * ``"twist"`` (opt-in, for speed): the four steps, in each sample's order, are composed into
      one per-sample 3x3 colour matrix plus offset (:func:`colour_twist`) and applied in a single
      batched matrix product, clamped to [0, 1] once at the end — NVIDIA DALI's colour twist, as
      solo-learn's DALI pipeline uses; hue is a YIQ chroma rotation.  Several times cheaper than
      ``sequential`` as an op (1.4-1.7x the SimCLR view pipeline's throughput on the CPU), but
      NOT torchvision's distribution wherever a step clips or hue
      moves: with the SimCLR ImageNet jitter (0.8, 0.8, 0.8, 0.2) on a colourful image the mean
      hue and the channel spreads differ clearly from torchvision's (the test above holds that
      difference too).  The two modes agree exactly for brightness, contrast and saturation
      whenever no intermediate value leaves [0, 1].  docs/performance.md has its cost,
      docs/benchmarks.md its measured effect on accuracy.
    """

    NAMES = ("brightness", "contrast", "saturation", "hue")
    MODES = ("sequential", "twist")

    def __init__(
        self,
        brightness: float | tuple[float, float] = 0.4,
        contrast: float | tuple[float, float] = 0.4,
        saturation: float | tuple[float, float] = 0.4,
        hue: float | tuple[float, float] = 0.1,
        p: float = 0.8,
        mode: Literal["sequential", "twist"] = "sequential",
    ) -> None:
        super().__init__()
        where = "color_jitter"
        ranges = []
        for name, value in zip(self.NAMES[:3], (brightness, contrast, saturation), strict=True):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if value < 0:
                    raise InvalidArgumentsError(f"{where}: {name} must be >= 0, got {value!r}")
                ranges.append((max(0.0, 1.0 - value), 1.0 + float(value)))
            else:
                ranges.append(_check_pair(where, name, value, 0.0))
        if isinstance(hue, (int, float)) and not isinstance(hue, bool):
            if not 0.0 <= hue <= 0.5:
                raise InvalidArgumentsError(f"{where}: hue must be in [0, 0.5], got {hue!r}")
            ranges.append((-float(hue), float(hue)))
        else:
            ranges.append(_check_pair(where, "hue", hue, -0.5, 0.5))
        if mode not in self.MODES:
            raise InvalidArgumentsError(f"{where}: mode must be one of {', '.join(self.MODES)}, got {mode!r}")
        self.ranges: tuple[tuple[float, float], ...] = tuple(ranges)
        self.p = _check_prob(where, p)
        self.mode = mode
        neutral = (1.0, 1.0, 1.0, 0.0)
        # Ops whose range is exactly the neutral value never change anything: skip them.
        self._active = tuple(i for i, (r, n) in enumerate(zip(self.ranges, neutral, strict=True)) if r != (n, n))
        self._ops = (_brightness, _contrast, _saturation, _hue)
        self.last_order: torch.Tensor | None = None  # (n, 4) op indices of the last call, for inspection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images("color_jitter", x)
        channels = x.shape[1]
        if channels not in (1, 3):
            raise ValueError(f"color_jitter expects 1 or 3 channels, got {channels}")
        chosen = _per_sample_gate(x.shape[0], self.p)
        n = chosen.numel()
        active = [i for i in self._active if channels == 3 or i < 2]  # C = 1: brightness, contrast
        if n == 0 or not active:
            self.last_order = None
            return x.clamp(0.0, 1.0)
        factors = torch.empty(4, n)
        for i, (lo, hi) in enumerate(self.ranges):
            factors[i].uniform_(lo, hi)
        order = torch.rand(n, 4).argsort(dim=1)  # an independent permutation of the 4 ops per sample
        self.last_order = order
        if self.mode == "twist":
            return self._twist(x, chosen, order, factors)
        out = x.clamp(0.0, 1.0)
        rows_all = chosen.to(x.device, non_blocking=True)
        sub = out[rows_all]
        for position in range(4):
            for op in active:
                rows = (order[:, position] == op).nonzero().flatten()
                if rows.numel() == 0:
                    continue
                factor = factors[op, rows].to(device=x.device, dtype=x.dtype, non_blocking=True)
                rows_dev = rows.to(x.device, non_blocking=True)
                sub[rows_dev] = self._ops[op](sub[rows_dev], factor)
        out[rows_all] = sub.clamp_(0.0, 1.0)
        return out

    def _twist(self, x: torch.Tensor, chosen: torch.Tensor, order: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        batch, channels = x.shape[:2]
        A, t, K = colour_twist(order, factors, channels)
        # Samples left out by p get the identity: one batched product over the whole batch is
        # cheaper than gathering and scattering the chosen ones.
        params = torch.zeros(3, batch, channels, channels, dtype=torch.float64)
        params[0] = torch.eye(channels, dtype=torch.float64)
        params[0, chosen], params[1, chosen, :, 0], params[2, chosen] = A, t, K
        params = params.to(device=x.device, dtype=x.dtype, non_blocking=True)
        flat = x.reshape(batch, channels, -1)  # in [0, 1] by contract; the result is clamped
        offset = params[1, :, :, :1] + params[2] @ flat.mean(2, keepdim=True)  # (B, C, 1)
        return torch.baddbmm(offset, params[0], flat).view_as(x).clamp_(0.0, 1.0)

    def extra_repr(self) -> str:
        ranges = ", ".join(f"{n}={r}" for n, r in zip(self.NAMES, self.ranges, strict=True))
        return f"{ranges}, p={self.p}, mode={self.mode!r}"


class Grayscale(nn.Module):
    """Convert to grayscale with per-sample probability ``p``, keeping C channels.

    ``(B, C, H, W) -> (B, C, H, W)``; ITU-R 601 weights (0.299, 0.587, 0.114), Kornia's, repeated
    over the 3 channels, as torchvision's ``RandomGrayscale`` (which weighs red 0.2989: values
    differ by < 1e-4).  The identity for C = 1.
    """

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        self.p = _check_prob("grayscale", p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images("grayscale", x)
        if x.shape[1] == 1:
            return x
        if x.shape[1] != 3:
            raise ValueError(f"grayscale expects 1 or 3 channels, got {x.shape[1]}")
        out = x.clone()
        chosen = _per_sample_gate(x.shape[0], self.p)
        if chosen.numel():
            rows = chosen.to(x.device, non_blocking=True)
            luma = torch.tensor(_LUMA, device=x.device, dtype=x.dtype)
            out[rows] = torch.einsum("bchw,c->bhw", x[rows], luma)[:, None].expand(-1, 3, -1, -1)
        return out

    def extra_repr(self) -> str:
        return f"p={self.p}"


class GaussianBlur(nn.Module):
    """Gaussian blur with sigma ~ U(sigma) per sample, applied with per-sample probability ``p``.

    ``(B, C, H, W) -> (B, C, H, W)``.  SimCLR: the kernel is 10% of the image side and
    sigma in [0.1, 2.0].  The kernel size is the odd integer closest to
    ``kernel_fraction * min(H, W)`` (at least 3; halves round up), unless ``kernel_size`` fixes
    it.  Reflect padding, normalised separable kernel, as Kornia's ``gaussian_blur2d`` and
    torchvision's ``GaussianBlur``; the chosen samples are blurred together by two grouped
    (depthwise) convolutions, one sample-specific 1-D kernel per image plane — about a third
    cheaper on the CPU than Kornia's ``RandomGaussianBlur``, which filters through ``filter2d``.
    """

    def __init__(
        self,
        kernel_fraction: float = 0.1,
        sigma: tuple[float, float] = (0.1, 2.0),
        p: float = 0.5,
        kernel_size: int | None = None,
    ) -> None:
        super().__init__()
        where = "gaussian_blur"
        if (
            isinstance(kernel_fraction, bool)
            or not isinstance(kernel_fraction, (int, float))
            or not (0.0 < kernel_fraction <= 1.0)
        ):
            raise InvalidArgumentsError(f"{where}: kernel_fraction must be in (0, 1], got {kernel_fraction!r}")
        if kernel_size is not None and (
            isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 3 or kernel_size % 2 == 0
        ):
            raise InvalidArgumentsError(f"{where}: kernel_size must be an odd int >= 3 or null, got {kernel_size!r}")
        self.kernel_fraction = float(kernel_fraction)
        self.kernel_size = kernel_size
        self.sigma = _check_pair(where, "sigma", sigma, 0.0, strict_low=True)
        self.p = _check_prob(where, p)

    def kernel_size_for(self, side: int) -> int:
        """Kernel size used for images whose shorter side is ``side``."""
        if self.kernel_size is not None:
            return self.kernel_size
        return max(3, 2 * math.floor((self.kernel_fraction * side - 1) / 2 + 0.5) + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images("gaussian_blur", x)
        k = self.kernel_size_for(min(x.shape[-2:]))
        if k // 2 >= min(x.shape[-2:]):
            raise ValueError(f"gaussian_blur: kernel size {k} is too large for {tuple(x.shape[-2:])} images")
        out = x.clamp(0.0, 1.0)  # out of place: never write into x
        chosen = _per_sample_gate(x.shape[0], self.p)
        n = chosen.numel()
        if n == 0:
            return out
        sigma = torch.empty(n, dtype=torch.float64).uniform_(*self.sigma)
        radius = k // 2
        taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
        weights = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None] ** 2))
        weights = (weights / weights.sum(1, keepdim=True)).to(device=x.device, dtype=x.dtype, non_blocking=True)
        rows = chosen.to(x.device, non_blocking=True)
        channels, height, width = x.shape[1:]
        planes = n * channels
        per_plane = weights.repeat_interleave(channels, 0)  # (n*C, k): one kernel per image plane
        padded = F.pad(out[rows], (radius, radius, radius, radius), mode="reflect")
        padded = padded.view(1, planes, height + 2 * radius, width + 2 * radius)
        blurred = F.conv2d(padded, per_plane[:, None, None, :], groups=planes)  # along W
        blurred = F.conv2d(blurred, per_plane[:, None, :, None], groups=planes)  # along H
        out[rows] = blurred.view(n, channels, height, width).clamp_(0.0, 1.0)
        return out

    def extra_repr(self) -> str:
        size = self.kernel_size if self.kernel_size is not None else f"{self.kernel_fraction:g}*side"
        return f"kernel_size={size}, sigma={self.sigma}, p={self.p}"


class Solarize(nn.Module):
    """Solarize with per-sample probability ``p``: pixels >= ``threshold`` become ``1 - x``.

    ``(B, C, H, W) -> (B, C, H, W)`` (BYOL-style), with ``kornia.enhance.solarize`` on the chosen
    samples (Kornia's ``RandomSolarize`` draws a random threshold around 0.5 and adds a random
    brightness shift by default).
    """

    def __init__(self, threshold: float = 0.5, p: float = 0.2) -> None:
        super().__init__()
        where = "solarize"
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise InvalidArgumentsError(f"{where}: threshold must be in [0, 1], got {threshold!r}")
        self.threshold = float(threshold)
        self.p = _check_prob(where, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images("solarize", x)
        out = x.clamp(0.0, 1.0)
        chosen = _per_sample_gate(x.shape[0], self.p)
        if chosen.numel():
            rows = chosen.to(x.device, non_blocking=True)
            out[rows] = KE.solarize(out[rows], self.threshold)
        return out

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, p={self.p}"


class Normalize(nn.Module):
    """Deterministic ``(x - mean) / std`` per channel; ``(B, C, H, W) -> (B, C, H, W)``.

    Defaults: the ImageNet statistics.  With three values and C = 1 (grayscale data), the mean
    of the three means and of the three stds is used.  Output is not in [0, 1].
    """

    normalizes = True  # the pipeline's normalisation step (contrastive.plan.is_normalization): eval and export use it

    def __init__(
        self,
        mean: tuple[float, ...] = (0.485, 0.456, 0.406),
        std: tuple[float, ...] = (0.229, 0.224, 0.225),
    ) -> None:
        super().__init__()
        where = "normalize"
        for name, values in (("mean", mean), ("std", std)):
            if not (
                isinstance(values, (list, tuple))
                and len(values) > 0
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            ):
                raise InvalidArgumentsError(f"{where}: {name} must be a non-empty list of numbers, got {values!r}")
        if len(mean) != len(std):
            raise InvalidArgumentsError(
                f"{where}: mean and std must have the same length, got {len(mean)} and {len(std)}"
            )
        if any(s <= 0 for s in std):
            raise InvalidArgumentsError(f"{where}: std values must be > 0, got {list(std)}")
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)

    def _stats(self, channels: int) -> tuple[Sequence[float], Sequence[float]]:
        if len(self.mean) == channels:
            return self.mean, self.std
        if len(self.mean) == 1:
            return self.mean * channels, self.std * channels
        if channels == 1 and len(self.mean) == 3:
            return (sum(self.mean) / 3,), (sum(self.std) / 3,)
        raise InvalidArgumentsError(
            f"normalize: mean/std have {len(self.mean)} values but the images have {channels} channels"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images("normalize", x)
        mean, std = self._stats(x.shape[1])
        return KE.normalize(
            x, torch.tensor(mean, device=x.device, dtype=x.dtype), torch.tensor(std, device=x.device, dtype=x.dtype)
        )

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


@hookimpl
def contrastive_register(registries):
    """Register the built-in augmentations."""
    registries.augmentations.register("random_resized_crop", RandomResizedCrop)
    registries.augmentations.register("horizontal_flip", HorizontalFlip)
    registries.augmentations.register("color_jitter", ColorJitter)
    registries.augmentations.register("grayscale", Grayscale)
    registries.augmentations.register("gaussian_blur", GaussianBlur)
    registries.augmentations.register("solarize", Solarize)
    registries.augmentations.register("normalize", Normalize)
