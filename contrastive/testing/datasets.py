"""The dataset contract, checked: [`check_dataset`][contrastive.testing.datasets.check_dataset].

A dataset (``registries.datasets``) is what
[`contrastive.components.datasets.ImageDataset`][contrastive.components.datasets.contract.ImageDataset] describes.  For a map-style dataset the
rules, on up to ``samples`` items spread over it (first and last included):

1. **items** — ``len(dataset) > 0``; ``dataset[i]`` is ``(image, label)``: ``image`` a
   ``torch.uint8`` tensor ``(C, H, W)``, ``label`` an ``int`` (``-1``: none);
2. **fixed shape** — every image has the same shape, and ``C`` is ``num_channels`` where the
   dataset says;
3. **labels** — ``labels`` is a ``(N,)`` int64 tensor agreeing with the items' labels; with
   ``has_labels`` False every label is -1 and ``classes`` None; with ``classes``, every label is
   -1 or an index into it.

A stream (an ``IterableDataset``: ``webdataset``) is refused: its contract is checked by training on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from contrastive.components.datasets.contract import dataset_info
from contrastive.components.datasets.stream import is_stream

if TYPE_CHECKING:
    from contrastive.registry import Registries


def _fail(name: str, rule: str, detail: str) -> None:
    raise AssertionError(f"dataset '{name}' breaks the dataset contract ({rule}): {detail}")


def check_dataset(name: str, *, registries: Registries | None=None, samples: int = 16, **args: Any) -> None:
    """Check the dataset registered as ``name``, built with ``args``, against the rules of this module."""
    import contrastive

    registries = registries if registries is not None else contrastive.load_registries()
    dataset = registries.datasets.build(name, **args)
    if is_stream(dataset):
        raise AssertionError(f"dataset '{name}' is a stream (IterableDataset): check_dataset checks map-style datasets")
    size = len(dataset)
    if size < 1:
        _fail(name, "items", "len(dataset) is 0")
    picked = sorted({round(k * (size - 1) / max(1, samples - 1)) for k in range(min(samples, size))})
    shapes, labels = set(), {}
    for index in picked:
        item = dataset[index]
        if not isinstance(item, tuple) or len(item) != 2:
            _fail(name, "items", f"dataset[{index}] is {type(item).__name__}, not (image, label)")
        image, label = item
        if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.ndim != 3:
            detail = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
            _fail(name, "items", f"dataset[{index}]'s image is {detail}; an image is a uint8 tensor (C, H, W)")
        if isinstance(label, bool) or not isinstance(label, int):
            _fail(name, "items", f"dataset[{index}]'s label is {label!r} ({type(label).__name__}), not an int")
        shapes.add(tuple(image.shape))
        labels[index] = label
    if len(shapes) > 1:
        _fail(name, "fixed shape", f"images of shapes {sorted(shapes)}: every image has one fixed shape")
    info = dataset_info(dataset)
    channels = info.num_channels
    if channels is not None and next(iter(shapes))[0] != channels:
        _fail(name, "fixed shape", f"num_channels is {channels}, the images have {next(iter(shapes))[0]} channels")
    every = info.labels
    if every is not None:
        if not isinstance(every, torch.Tensor) or every.dtype != torch.int64 or tuple(every.shape) != (size,):
            detail = f"{every.dtype} {tuple(every.shape)}" if isinstance(every, torch.Tensor) else type(every).__name__
            _fail(name, "labels", f"labels is {detail}; it is a ({size},) int64 tensor")
        wrong = [i for i, label in labels.items() if int(every[i]) != label]
        if wrong:
            _fail(name, "labels", f"labels[{wrong[0]}] is {int(every[wrong[0]])}, dataset[{wrong[0]}] says {labels[wrong[0]]}")
    classes = info.classes
    if not info.has_labels and (classes is not None or any(v != -1 for v in labels.values())):
        _fail(name, "labels", "has_labels is False, yet it has classes or labels other than -1")
    if classes is not None:
        bad = [v for v in labels.values() if not -1 <= v < len(classes)]
        if bad:
            _fail(name, "labels", f"label {bad[0]} is not an index into its {len(classes)} classes")
