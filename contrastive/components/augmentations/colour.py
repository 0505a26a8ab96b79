"""Colour augmentations: colour jitter, grayscale, solarize, normalize (torchvision v2's
``_color.py``, with ``Normalize``).

Each ``(B, C, H, W) -> (B, C, H, W)``, float in [0, 1] (``normalize``'s output is not), C = 3
or C = 1; random parameters drawn per sample on the CPU.  The pixel kernels (Kornia's
torchvision-compatible ``kornia.enhance`` functions, the closed-form HSV hue, the colour twist)
are in [`functional`][contrastive.components.augmentations.functional].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import kornia.enhance as KE
import torch
from torch import nn

from contrastive.components.augmentations.contract import _check_images, _check_pair, _check_prob, _per_sample_gate
from contrastive.components.augmentations.functional import (
    _LUMA,
    _brightness,
    _contrast,
    _hue,
    _saturation,
    colour_twist,
)
from contrastive.errors import InvalidArgumentsError

__all__ = ["ColorJitter", "Grayscale", "Normalize", "Solarize"]


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
      torchvision-compatible ``kornia.enhance`` functions), hue shifted in HSV (`_hue`).
      ``tests/components/test_augmentation_distributions.py`` holds its output distribution to
      torchvision's.
    * ``"twist"`` (opt-in, for speed): the four steps, in each sample's order, are composed into
      one per-sample 3x3 colour matrix plus offset ([`colour_twist`][contrastive.components.augmentations.functional.colour_twist]) and applied in a single
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
