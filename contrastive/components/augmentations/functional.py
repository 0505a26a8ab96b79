"""The batch kernels: pure functions of a batch and its per-sample parameters, no random draws
(torchvision v2's ``functional/``).  The ops in [`geometry`][contrastive.components.augmentations.geometry], [`colour`][contrastive.components.augmentations.colour] and
[`blur`][contrastive.components.augmentations.blur] draw the parameters and call these.

* crop and resize: `_per_sample_crop_resize` (one sample at a time, antialiased where it
  shrinks; uint8 on the CPU) and `_batched_crop_resize` (one batched separable pass, for
  crops not larger than the output), both ``(B, C, H, W)`` and CPU int64 boxes ``(B,)`` ->
  ``(B, C, *size)``;
* colour: ``_brightness``, ``_contrast``, ``_saturation`` (Kornia's torchvision-compatible
  ``kornia.enhance`` functions) and `_hue` (HSV shift in closed form), each
  ``(n, C, H, W)`` and factors ``(n,)`` -> ``(n, C, H, W)``; [`colour_twist`][contrastive.components.augmentations.functional.colour_twist], the
  per-sample affine colour map of ``color_jitter``'s ``twist`` mode;
* the constants they share: ``_LUMA`` (ITU-R 601), ``_RGB_TO_YIQ``, ``_HSV_OFFSETS``.
"""

from __future__ import annotations

import math

import kornia.enhance as KE
import torch
import torch.nn.functional as F


# -- crop and resize ---------------------------------------------------------------------------
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


# -- colour ------------------------------------------------------------------------------------
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
