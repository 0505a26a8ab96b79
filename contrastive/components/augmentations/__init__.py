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
  an original image that was squashed to a square; [`sample_crop_boxes`][contrastive.components.augmentations.geometry.sample_crop_boxes] draws torchvision's
  boxes (vectorised), and the crop is a slice plus ``F.interpolate`` (uint8 on the CPU).
* ``RandomSolarize(thresholds=0.1)`` draws the threshold from 0.5 ± 0.1 and adds a random
  brightness shift; a fixed threshold needs ``thresholds=(t, t), additions=(0, 0)``, and the
  module costs about twice the plain ``kornia.enhance.solarize`` on the CPU, which we use.
* Kornia's ``RandomGaussianBlur`` filters through ``filter2d``; two grouped 1-D convolutions
  with a kernel per image plane give the same result a third cheaper.

The package, split as torchvision v2 splits its transforms: [`geometry`][contrastive.components.augmentations.geometry] (crop, flip),
[`colour`][contrastive.components.augmentations.colour] (jitter, grayscale, solarize, normalize), [`blur`][contrastive.components.augmentations.blur], the batch kernels they
call ([`functional`][contrastive.components.augmentations.functional]) and what every op shares (`contract`: argument checks, the
per-sample gate).  This module registers the built-ins and re-exports their public names;
`views` builds the view pipelines from them and [`kornia`][contrastive.components.augmentations.kornia] adds every Kornia
augmentation by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contrastive import hookimpl
from contrastive.components.augmentations.blur import GaussianBlur
from contrastive.components.augmentations.colour import ColorJitter, Grayscale, Normalize, Solarize
from contrastive.components.augmentations.functional import _LUMA as _LUMA
from contrastive.components.augmentations.functional import _batched_crop_resize as _batched_crop_resize
from contrastive.components.augmentations.functional import _brightness as _brightness
from contrastive.components.augmentations.functional import _contrast as _contrast
from contrastive.components.augmentations.functional import _hue as _hue
from contrastive.components.augmentations.functional import _saturation as _saturation
from contrastive.components.augmentations.functional import colour_twist as colour_twist
from contrastive.components.augmentations.geometry import HorizontalFlip, RandomResizedCrop
from contrastive.components.augmentations.geometry import sample_crop_boxes as sample_crop_boxes

if TYPE_CHECKING:
    from contrastive.registry import Registries

__all__ = [
    "ColorJitter",
    "GaussianBlur",
    "Grayscale",
    "HorizontalFlip",
    "Normalize",
    "RandomResizedCrop",
    "Solarize",
]

# The built-in classes keep the package as their module, as before the split: the registry's
# listings and messages, reprs and pickles name ``contrastive.components.augmentations.ColorJitter``,
# the path users import (the submodules are where the code lives, not a second public path).
for _cls in (RandomResizedCrop, HorizontalFlip, ColorJitter, Grayscale, GaussianBlur, Solarize, Normalize):
    _cls.__module__ = __name__
del _cls


@hookimpl
def contrastive_register(registries: Registries):
    """Register the built-in augmentations."""
    registries.augmentations.register("random_resized_crop", RandomResizedCrop)
    registries.augmentations.register("horizontal_flip", HorizontalFlip)
    registries.augmentations.register("color_jitter", ColorJitter)
    registries.augmentations.register("grayscale", Grayscale)
    registries.augmentations.register("gaussian_blur", GaussianBlur)
    registries.augmentations.register("solarize", Solarize)
    registries.augmentations.register("normalize", Normalize)
