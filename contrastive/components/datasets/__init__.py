"""Built-in datasets.

Every dataset here but the ``webdataset`` stream is a map-style ``torch.utils.data.Dataset`` whose
``__getitem__(i)`` returns ``(image, label)``: ``image`` a ``torch.uint8`` tensor of fixed shape ``(C, H, W)`` and ``label``
an ``int`` (``-1`` for a sample without a label).  Each object also has

- ``num_channels: int`` (``C``) and ``image_size: tuple[int, int]`` (``(H, W)``),
- ``classes: list[str] | None`` (``None`` when the data has no labels),
- ``has_labels: bool``,
- ``labels``: a ``(N,)`` int64 tensor of every label, for evaluation without decoding images,
- ``paths: list[str]`` for file-based data (``image_folder``, ``imagenet``; ``hf_dataset``: one
  ``PATH[SPLIT][ROW]`` name per image).

The folder datasets also take ``crop``: ``whole`` (default) squashes the whole image to the square
and keeps its aspect ratio aside for the crop step (``whole_image`` True; ``load_item(i)`` returns
``(image, label, source_aspect)``), ``center`` keeps the centre square (evaluation).

Array datasets (``digits``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``stl10``) are preloaded
as one ``(N, C, H, W)`` uint8 tensor; folder datasets and ``hf_dataset`` (a Hugging Face
``datasets`` dataset, optional package) decode lazily with PIL.  ``webdataset`` (tar shards,
optional package) streams: a ``torch.utils.data.IterableDataset`` whose items are already
``(image, label, index[, source_aspect])`` — see :class:`ImageDataset` for what a stream provides.  Every problem
with the data itself raises :class:`contrastive.errors.DataError` naming the path, what was
expected there and the fix; bad arguments raise :class:`InvalidArgumentsError`.
"""

from __future__ import annotations

from typing import Protocol

import torch

from contrastive import hookimpl
from contrastive.components.datasets.arrays import (
    FASHION_MNIST_CLASSES,
    STL10_CLASSES,
    CIFAR10Dataset,
    CIFAR100Dataset,
    DigitsDataset,
    FashionMNISTDataset,
    STL10Dataset,
    TensorImageDataset,
    read_idx,
    resize_uint8,
)
from contrastive.components.datasets.folder import (
    CROPS,
    IMAGE_EXTENSIONS,
    REPORT_FIRST,
    WORKER_SLOTS,
    ImageFolderDataset,
    ImageNetDataset,
    list_images,
)
from contrastive.components.datasets.hf import HFImageDataset
from contrastive.components.datasets.shapes import SHAPES_CLASSES, ShapesDataset
from contrastive.components.datasets.webdataset import ShardImages, WebDataset, webdataset


class ImageDataset(Protocol):
    """What the training loop and evaluation read from a dataset (what a ``datasets`` factory returns).

    Every dataset has:

    - ``len(dataset)`` and ``dataset[i]`` -> ``(image, label)``: ``image`` a ``torch.uint8``
      tensor ``(C, H, W)`` of one fixed shape, ``label`` an ``int`` (``-1``: no label);
    - ``num_channels: int`` (``C``; the backbone's input is matched to it);
    - ``labels``: a ``(N,)`` int64 tensor of every label (``-1``: none), so that label checks
      and evaluation need not decode the images;
    - ``has_labels: bool`` (False for unlabeled data: methods that need labels refuse it);
    - ``classes: list[str] | None`` (``None`` without labels).

    The loop and evaluation read these four attributes with a fallback (``num_channels``: the
    backbone's ``in_chans``; ``labels``: every item's label; ``has_labels``: True;
    ``classes``: None), but every built-in dataset has them and a new one should too.

    Optional capabilities, each looked up with ``getattr`` / ``hasattr`` and used only when
    present (hence not members of this protocol):

    - ``whole_image: bool``: True when items are whole images squashed to the square
      (``image_folder`` / ``imagenet`` with ``crop: whole``); the loop then reads items
      through ``load_item``.  Absent: False.
    - ``load_item(i)`` -> ``(image, label, source_aspect)``: the item as ``dataset[i]`` gives
      it plus the width / height of what the image shows; needed when ``whole_image`` is True.
    - ``skipped_files``: the bad files found so far (``{"count": n, "first": [paths]}``),
      recorded in ``results.json``.  Absent: None.
    - ``reading_now()`` -> ``list[str]``: the paths being decoded right now, so that
      ``contrastive.training.data.guard_loader`` can name the file a dying worker was reading.
    - ``paths: list[str]``: one path per image, saved by ``contrastive embed``.
    - ``labels_hint: str | None``: why unlabelled data has no labels (and how to give it some),
      for the messages that skip or refuse supervised evaluation.
    - ``subset(indices)``: the same dataset restricted to some images (evaluation's hold-out);
      absent: :class:`contrastive.evaluation.holdout.IndexSubset` wraps it.
    - ``derive_eval_splits`` (a class attribute): False when the factory's ``train``/``split``
      argument does not name a train/test pair (``hf_dataset``): evaluation then holds out part
      of the data (``eval.holdout``) instead of assuming a ``test`` split.
    - ``images``: the whole ``(N, C, H, W)`` uint8 tensor of an in-memory dataset; feature
      extraction slices it (with ``labels``) instead of calling ``dataset[i]`` per image.

    A *stream* (``webdataset``) is instead a ``torch.utils.data.IterableDataset`` with
    ``num_channels``, ``image_size``, ``has_labels``, ``classes``, ``whole_image`` and no
    ``labels``; ``len()`` is the samples of one epoch, ``num_shards`` how many readers it can
    feed, ``start_epoch(plan)`` (a :class:`~contrastive.components.datasets.webdataset.EpochPlan`)
    says what the next ``iter()`` yields in each DataLoader worker — its items are
    ``(image, label, index[, source_aspect])`` — and ``first_item()`` gives ``(image, label,
    source_aspect)`` of its first sample.  The loop reads it through
    :class:`contrastive.training.streaming.StreamLoader`.  Its factory may name evaluation's test
    data with a ``test_split(args)`` attribute, and evaluation reads it with ``in_memory: true``
    (a map-style copy), as :mod:`contrastive.evaluation.data` describes.
    """

    num_channels: int
    labels: torch.Tensor
    has_labels: bool
    classes: list[str] | None

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]: ...


@hookimpl
def contrastive_register(registries):
    registries.datasets.register("digits", DigitsDataset)
    registries.datasets.register("fashion_mnist", FashionMNISTDataset)
    registries.datasets.register("cifar10", CIFAR10Dataset)
    registries.datasets.register("cifar100", CIFAR100Dataset)
    registries.datasets.register("stl10", STL10Dataset)
    registries.datasets.register("image_folder", ImageFolderDataset)
    registries.datasets.register("imagenet", ImageNetDataset)
    registries.datasets.register("hf_dataset", HFImageDataset)
    registries.datasets.register("webdataset", webdataset)
    registries.datasets.register("shapes", ShapesDataset)


__all__ = [
    "CROPS",
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "REPORT_FIRST",
    "SHAPES_CLASSES",
    "STL10_CLASSES",
    "WORKER_SLOTS",
    "CIFAR10Dataset",
    "CIFAR100Dataset",
    "DigitsDataset",
    "FashionMNISTDataset",
    "HFImageDataset",
    "ImageDataset",
    "ImageFolderDataset",
    "ImageNetDataset",
    "STL10Dataset",
    "ShapesDataset",
    "ShardImages",
    "TensorImageDataset",
    "WebDataset",
    "contrastive_register",
    "list_images",
    "read_idx",
    "resize_uint8",
]
