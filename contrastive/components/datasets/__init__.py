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

The contract itself is [`ImageDataset`][contrastive.components.datasets.contract.ImageDataset] (module ``contract``): the loop and evaluation read
every member beyond ``len`` and ``dataset[i]`` through [`dataset_info`][contrastive.components.datasets.contract.dataset_info], which gives an absent
one its default ([`DatasetInfo`][contrastive.components.datasets.contract.DatasetInfo]), so a plugin's dataset need not subclass anything.

The folder datasets also take ``crop``: ``whole`` (default) squashes the whole image to the square
and keeps its aspect ratio aside for the crop step (``whole_image`` True; ``load_item(i)`` returns
``(image, label, source_aspect)``), ``center`` keeps the centre square (evaluation).

Array datasets (``digits``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``stl10``) are preloaded
as one ``(N, C, H, W)`` uint8 tensor; folder datasets and ``hf_dataset`` (a Hugging Face
``datasets`` dataset, optional package) decode lazily with PIL.  ``webdataset`` (tar shards,
optional package) streams: a ``torch.utils.data.IterableDataset`` whose items are already
``(image, label, index[, source_aspect])`` — [`ImageStream`][contrastive.components.datasets.stream.ImageStream] (module ``stream``) is what a stream provides.  Every problem
with the data itself raises [`contrastive.errors.DataError`][contrastive.errors.DataError] naming the path, what was
expected there and the fix; bad arguments raise [`InvalidArgumentsError`][contrastive.errors.InvalidArgumentsError].
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from contrastive.components.datasets.contract import (
    CAPABILITIES,
    DatasetInfo,
    DatasetView,
    ImageDataset,
    dataset_info,
)
from contrastive.components.datasets.folder import (
    CROPS,
    IMAGE_EXTENSIONS,
    ImageFolderDataset,
    ImageNetDataset,
    list_images,
)
from contrastive.components.datasets.hf import HFImageDataset
from contrastive.components.datasets.reporting import REPORT_FIRST, WORKER_SLOTS
from contrastive.components.datasets.shapes import SHAPES_CLASSES, ShapesDataset
from contrastive.components.datasets.stream import EpochPlan, ImageStream, is_stream
from contrastive.components.datasets.webdataset import ShardImages, WebDataset, webdataset

if TYPE_CHECKING:
    from contrastive.registry import Registries


@hookimpl
def contrastive_register(registries: Registries):
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
    "CAPABILITIES",
    "CROPS",
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "REPORT_FIRST",
    "SHAPES_CLASSES",
    "STL10_CLASSES",
    "WORKER_SLOTS",
    "CIFAR10Dataset",
    "CIFAR100Dataset",
    "DatasetInfo",
    "DatasetView",
    "DigitsDataset",
    "EpochPlan",
    "FashionMNISTDataset",
    "HFImageDataset",
    "ImageDataset",
    "ImageFolderDataset",
    "ImageNetDataset",
    "ImageStream",
    "STL10Dataset",
    "ShapesDataset",
    "ShardImages",
    "TensorImageDataset",
    "WebDataset",
    "contrastive_register",
    "dataset_info",
    "is_stream",
    "list_images",
    "read_idx",
    "resize_uint8",
]
