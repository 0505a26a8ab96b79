"""Built-in image augmentations (SimCLR, Chen et al., 2020, arXiv:2002.05709, appendix A).

Every augmentation is an ``nn.Module`` built from its recipe arguments whose forward takes a
``(B, C, H, W)`` float batch in [0, 1] on any device and returns a batch of the same shape
(``random_resized_crop`` returns its ``size``), still in [0, 1] (except ``normalize``).
Random parameters are drawn afresh for every sample and ``p`` is a per-sample probability.
C = 3 is the main case; C = 1 (grayscale data) is accepted too: colour jitter then applies only
brightness and contrast, and ``grayscale`` is the identity.

Random parameters are drawn on the CPU from torch's global generator (as Kornia does), so a
seeded run draws the same views on every device and the image ops never wait on the device.

Kornia 0.9 notes that shaped this module (read in its source):

* ``kornia.augmentation.ColorJitter`` uses torchvision's formulas, but draws ONE random order of
  the four steps per call, shared by the whole batch; ``ColorJiggle`` has the same order
  behaviour and uses different formulas (additive brightness, HSV saturation).  Our
  ``color_jitter`` therefore draws a permutation per sample and applies the Kornia functional
  ops (``kornia.enhance.adjust_*``, torchvision semantics) to the matching sub-batches.
* ``kornia.augmentation.RandomResizedCrop``'s ``p`` is a *batch* probability (``p_batch``), its
  default ``align_corners=True`` differs from torchvision, and it offers no antialias; we draw
  its parameters with Kornia and crop with ``kornia.geometry.transform.crop_by_indices``.
* ``RandomSolarize(thresholds=0.1)`` draws the threshold from 0.5 ± 0.1 and adds a random
  brightness shift; a fixed threshold needs ``thresholds=(t, t), additions=(0, 0)``, and the
  module costs about twice the plain ``kornia.enhance.solarize`` on the CPU, which we use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import kornia.augmentation as KA
import kornia.enhance as KE
import torch
from kornia.geometry.transform import crop_by_indices
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
    "ViewPipeline",
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


def _check_images(where: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
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
class RandomResizedCrop(nn.Module):
    """Crop a random area fraction and aspect ratio, resize to ``size`` (torchvision semantics).

    ``(B, C, H, W) -> (B, C, *size)``.  Per sample: area fraction ~ U(scale), log aspect ratio
    (width / height) ~ U(log ratio), ten tries then a centre crop as in torchvision's
    ``RandomResizedCrop.get_params`` (Kornia's ``ResizedCropGenerator``); bilinear resize with
    ``align_corners=False`` and Kornia's Gaussian antialias when shrinking.  A sample left out by
    ``p`` is the whole image resized to ``size``.
    """

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
        self._params = KA.RandomResizedCrop(self.size, scale=self.scale, ratio=self.ratio, align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images("random_resized_crop", x)
        batch, _, height, width = x.shape
        if batch == 0:
            return x.new_empty(batch, x.shape[1], *self.size)
        src = self._params.forward_parameters(x.shape)["src"].clone()  # (B, 4, 2) corners (x, y), CPU
        keep = torch.ones(batch, dtype=torch.bool)
        keep[_per_sample_gate(batch, self.p)] = False
        if keep.any():  # left out by p: the whole image
            whole = torch.tensor([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=src.dtype)
            src[keep] = whole
        boxes = src.to(torch.long)  # integer pixel boxes, as crop_by_indices truncates them
        x1, x2 = boxes[:, 0, 0], boxes[:, 1, 0] + 1
        y1, y2 = boxes[:, 0, 1], boxes[:, 3, 1] + 1
        shrinks = (y2 - y1 > self.size[0]) | (x2 - x1 > self.size[1])
        # On an accelerator, crops not larger than the output (the common case) are resized in one
        # batched pass: a fixed handful of kernels instead of a few per view.  On the CPU the
        # per-sample interpolate is as fast or faster (it reads only the crop), so it is kept there.
        if x.device.type == "cpu":
            shrinks = torch.ones_like(shrinks)
        if not shrinks.any():
            return _batched_crop_resize(x, x1, x2, y1, y2, self.size)
        if shrinks.all():
            out = crop_by_indices(x, src, self.size, interpolation="bilinear", align_corners=False, antialias=True)
            return out.clamp(0.0, 1.0)  # out of place: the crop may be a view of x
        big = shrinks.nonzero().flatten()  # shrinking crops need Kornia's antialias: per-sample path
        small = (~shrinks).nonzero().flatten()
        out = x.new_empty(batch, x.shape[1], *self.size)
        big_dev, small_dev = big.to(x.device, non_blocking=True), small.to(x.device, non_blocking=True)
        out[big_dev] = crop_by_indices(
            x[big_dev], src[big], self.size, interpolation="bilinear", align_corners=False, antialias=True
        ).clamp_(0.0, 1.0)
        out[small_dev] = _batched_crop_resize(x[small_dev], x1[small], x2[small], y1[small], y2[small], self.size)
        return out

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, ratio={self.ratio}, p={self.p}"


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
    """Mirror left-right with per-sample probability ``p`` (Kornia ``RandomHorizontalFlip``).

    ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _check_prob("horizontal_flip", p)
        self._aug = KA.RandomHorizontalFlip(p=self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images("horizontal_flip", x)
        return self._aug(x)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# -- colour ----------------------------------------------------------------------------------
def _brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return KE.adjust_brightness_accumulative(x, f)  # x * f, clamped (torchvision)


def _contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return KE.adjust_contrast_with_mean_subtraction(x, f)  # blend with the grayscale mean (torchvision)


def _saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return KE.adjust_saturation_with_gray_subtraction(x, f)  # blend with the grayscale (torchvision)


def _hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return KE.adjust_hue(x, f * (2 * math.pi))  # torchvision's factor is in turns of the hue circle


class ColorJitter(nn.Module):
    """Random brightness, contrast, saturation and hue, in a random order per sample.

    ``(B, C, H, W) -> (B, C, H, W)``, C = 3 (or C = 1: brightness and contrast only).
    torchvision ``ColorJitter`` semantics: a number ``b`` draws the factor uniformly from
    ``[max(0, 1 - b), 1 + b]`` (the same for contrast and saturation), ``hue = h`` draws the shift
    from ``[-h, h]`` (h <= 0.5); a pair ``[lo, hi]`` gives the range itself.  As in the SimCLR
    paper (and torchvision), the four operations are applied in a random order, drawn here
    independently for every sample (Kornia's ``ColorJitter`` shares one order per batch).
    The ops are Kornia's torchvision-compatible ``kornia.enhance`` functions.
    """

    NAMES = ("brightness", "contrast", "saturation", "hue")

    def __init__(
        self,
        brightness: float | tuple[float, float] = 0.4,
        contrast: float | tuple[float, float] = 0.4,
        saturation: float | tuple[float, float] = 0.4,
        hue: float | tuple[float, float] = 0.1,
        p: float = 0.8,
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
        self.ranges: tuple[tuple[float, float], ...] = tuple(ranges)
        self.p = _check_prob(where, p)
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
        out = x.clamp(0.0, 1.0)
        active = [i for i in self._active if channels == 3 or i < 2]  # C = 1: brightness, contrast
        if n == 0 or not active:
            self.last_order = None
            return out
        factors = torch.empty(4, n)
        for i, (lo, hi) in enumerate(self.ranges):
            factors[i].uniform_(lo, hi)
        order = torch.rand(n, 4).argsort(dim=1)  # an independent permutation of the 4 ops per sample
        self.last_order = order
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

    def extra_repr(self) -> str:
        ranges = ", ".join(f"{n}={r}" for n, r in zip(self.NAMES, self.ranges, strict=True))
        return f"{ranges}, p={self.p}"


class Grayscale(nn.Module):
    """Convert to grayscale with per-sample probability ``p``, keeping C channels.

    ``(B, C, H, W) -> (B, C, H, W)``; ITU-R 601 weights (0.299, 0.587, 0.114) as torchvision's
    ``RandomGrayscale``, repeated over the 3 channels (Kornia ``RandomGrayscale``).  The identity
    for C = 1.
    """

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        self.p = _check_prob("grayscale", p)
        self._aug = KA.RandomGrayscale(p=self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images("grayscale", x)
        if x.shape[1] == 1:
            return x
        if x.shape[1] != 3:
            raise ValueError(f"grayscale expects 1 or 3 channels, got {x.shape[1]}")
        return self._aug(x)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class GaussianBlur(nn.Module):
    """Gaussian blur with sigma ~ U(sigma) per sample, applied with per-sample probability ``p``.

    ``(B, C, H, W) -> (B, C, H, W)``.  SimCLR: the kernel is 10% of the image side and
    sigma in [0.1, 2.0].  The kernel size is the odd integer closest to
    ``kernel_fraction * min(H, W)`` (at least 3; halves round up), unless ``kernel_size`` fixes
    it.  Reflect padding (Kornia ``RandomGaussianBlur``).
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
        self._blurs: dict[int, KA.RandomGaussianBlur] = {}

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
        if k not in self._blurs:
            self._blurs[k] = KA.RandomGaussianBlur(k, self.sigma, border_type="reflect", p=self.p)
        return self._blurs[k](x).clamp(0.0, 1.0)  # out of place: never write into x

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


# -- view pipeline (used by the engine; not registered) ---------------------------------------
class ViewPipeline(nn.Module):
    """The recipe's augmentation list, applied in order, without gradient tracking.

    ``forward(x)``: ``(B, C, H, W)`` uint8 (divided by 255 on its device) or float in [0, 1]
    -> float view(s).  ``two_views(x)`` draws two independent views of every sample.
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.steps = nn.ModuleList(modules)

    @staticmethod
    def to_float(x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"augmentation pipeline expects a (B, C, H, W) batch, got {got}")
        if x.dtype == torch.uint8:
            return x.to(torch.float32).div_(255.0)
        if not x.is_floating_point():
            raise ValueError(f"augmentation pipeline expects uint8 or float images, got {x.dtype}")
        return x

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.to_float(x)
        for step in self.steps:
            x = step(x)
        return x

    @torch.no_grad()
    def two_views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independently augmented views ``(view_a, view_b)`` of every sample of ``x``.

        One batched pass over ``torch.cat([x, x])``, split in two: every sample of the doubled
        batch gets its own random parameters, so the halves are independent.
        CPU timing (2 shared cores, torch 2.14, kornia 0.9; B=256 uint8 3x32x32; median of 30,
        alternating): crop+flip+jitter+grayscale: one pass over the doubled batch 100-108 ms vs
        two passes 100-113 ms (a tie); with blur+solarize+normalize added: 805-1115 ms vs
        1086-1405 ms (one pass 20-25% faster; the colour-jitter hue step dominates).  The machine
        was shared, so absolute numbers are noisy; one pass was never slower, so it is kept.
        """
        batch = x.shape[0]
        views = self(torch.cat([x, x]))
        return views[:batch], views[batch:]

    def __len__(self) -> int:
        return len(self.steps)


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
