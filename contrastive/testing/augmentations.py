"""The augmentation contract, checked: [`check_augmentation`][contrastive.testing.augmentations.check_augmentation].

An augmentation (``registries.augmentations``) is an ``nn.Module`` called on a batch ``(B, C, H, W)``
of float images in [0, 1] on any device.  The rules:

1. **shape** — the same shape back (a crop is built with the size of its input here; a crop to
   another size is checked with ``size=`` equal to the input's);
2. **dtype** — the same floating dtype back;
3. **range** — values stay in [0, 1], and finite;
4. **per-sample independence** — identical images in one batch come back different: the random
   parameters are drawn per sample, not once per batch (give args under which it acts, e.g. ``p=1.0``);
5. **device** — the output is on the input's device (every CUDA device too, when there is one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from contrastive.registry import Registries

BATCH, CHANNELS, SIZE = 16, 3, 16


def _fail(name: str, rule: str, detail: str) -> None:
    raise AssertionError(f"augmentation '{name}' breaks the augmentation contract ({rule}): {detail}")


def _images(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(BATCH, CHANNELS, SIZE, SIZE, generator=generator).to(device=device, dtype=dtype)


def _apply(name: str, augmentation, images: torch.Tensor) -> torch.Tensor:
    try:
        out = augmentation(images)
    except Exception as exc:  # noqa: BLE001  named, with the input it failed on
        _fail(name, "shape", f"raised {type(exc).__name__}: {exc} on a {tuple(images.shape)} {images.dtype} batch "
              f"on {images.device}")
    if not isinstance(out, torch.Tensor):
        _fail(name, "shape", f"returned {type(out).__name__}, not a tensor")
    return out


def check_augmentation(name: str, *, registries: Registries | None=None, **args: Any) -> None:
    """Check the augmentation registered as ``name``, built with ``args`` (under which it changes
    images: rule 4), against the rules of this module."""
    import contrastive

    registries = registries if registries is not None else contrastive.load_registries()
    torch.manual_seed(0)
    augmentation = registries.augmentations.build(name, **args)
    for dtype in (torch.float32, torch.float64):
        images = _images(dtype=dtype)
        out = _apply(name, augmentation, images)
        if out.shape != images.shape:
            _fail(name, "shape", f"{tuple(images.shape)} in, {tuple(out.shape)} out")
        if out.dtype != dtype:
            _fail(name, "dtype", f"{dtype} in, {out.dtype} out")
        if not torch.isfinite(out).all() or out.min() < 0 or out.max() > 1:
            _fail(name, "range", f"values from {out.min().item():.4g} to {out.max().item():.4g}; images stay in [0, 1]")
    same = _images()[:1].expand(BATCH, -1, -1, -1).contiguous()
    out = _apply(name, augmentation, same)
    if all(torch.equal(out[0], out[i]) for i in range(1, BATCH)):
        _fail(name, "per-sample independence", f"{BATCH} identical images came back identical: draw the random "
              f"parameters per sample (or give args under which it acts, e.g. p=1.0)")
    devices = [torch.device("cpu")] + [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    for device in devices:
        out = _apply(name, augmentation.to(device) if hasattr(augmentation, "to") else augmentation, _images(device))
        if out.device != device:
            _fail(name, "device", f"input on {device}, output on {out.device}")
