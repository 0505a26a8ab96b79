"""A Gaussian noise augmentation (the built-ins have none), on top of Kornia's op."""

from __future__ import annotations

import torch
from contrastive.errors import InvalidArgumentsError
from kornia.augmentation import RandomGaussianNoise
from torch import nn


class GaussianNoise(nn.Module):
    """Add N(0, std²) noise to each image with probability p, then clamp to [0, 1].

    ``(B, C, H, W)`` float in [0, 1], on any device -> same shape.  Each image draws its own
    noise and its own coin; the noise is drawn on the images' device.

    Args:
        std: standard deviation of the noise, in units of the [0, 1] pixel range.
        p: probability of adding noise to an image.
    """

    def __init__(self, std: float = 0.05, p: float = 0.5) -> None:
        super().__init__()
        if not std >= 0:
            raise InvalidArgumentsError(f"gaussian_noise: std must be >= 0, got {std}")
        if not 0 <= p <= 1:
            raise InvalidArgumentsError(f"gaussian_noise: p must be in [0, 1], got {p}")
        self.std = float(std)
        self.p = float(p)
        self.noise = RandomGaussianNoise(mean=0.0, std=self.std, p=self.p)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or not images.is_floating_point():
            raise ValueError(
                f"gaussian_noise expects a float (B, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}"
            )
        # Kornia draws on the CPU unless told otherwise; draw where the images are instead.
        self.noise.set_rng_device_and_dtype(images.device, images.dtype)
        return self.noise(images).clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"std={self.std}, p={self.p}"
