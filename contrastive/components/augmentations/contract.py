"""What every built-in augmentation shares: recipe-argument checks, the input check and the
per-sample gate.

* ``_check_prob``, ``_check_pair``: a recipe argument (a probability; a ``[lo, hi]`` pair, tuple
  or YAML list) checked once, in the constructor, raising [`InvalidArgumentsError`][contrastive.errors.InvalidArgumentsError];
* ``_check_images``: the forward contract, a ``(B, C, H, W)`` float batch (uint8 where the op
  accepts it), raising ``ValueError``;
* ``_per_sample_gate``: the CPU indices of the samples an op with probability ``p`` applies to,
  drawn from torch's global generator (never on the device).
"""

from __future__ import annotations

import math

import torch

from contrastive.errors import InvalidArgumentsError


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
