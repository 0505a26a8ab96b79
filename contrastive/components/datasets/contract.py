"""The image dataset contract: what a ``datasets`` factory returns ([`ImageDataset`][contrastive.components.datasets.contract.ImageDataset]), its
optional capabilities with their defaults in one place ([`DatasetInfo`][contrastive.components.datasets.contract.DatasetInfo], read by
[`dataset_info`][contrastive.components.datasets.contract.dataset_info]), and the base of the wrappers that show a dataset differently
([`DatasetView`][contrastive.components.datasets.contract.DatasetView]).

A dataset need not subclass anything: a plugin's object with the four members of
[`ImageDataset`][contrastive.components.datasets.contract.ImageDataset] is a dataset, and [`dataset_info`][contrastive.components.datasets.contract.dataset_info] gives every capability it lacks its
documented default.  That is why the defaults live in a function over any object rather than in
a base class: a base class would hold them only for its subclasses, and every reader would still
need a fallback for a duck-typed one.  The stream contract (``webdataset``) is
[`contrastive.components.datasets.stream`][contrastive.components.datasets.stream].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol

import torch
from torch.utils.data import Dataset

from contrastive.components.datasets.stream import is_stream


class ImageDataset(Protocol):
    """What the training loop and evaluation read from a map-style dataset (what a ``datasets``
    factory returns; a stream is [`ImageStream`][contrastive.components.datasets.stream.ImageStream]).

    - ``len(dataset)`` and ``dataset[i]`` -> ``(image, label)``: ``image`` a ``torch.uint8``
      tensor ``(C, H, W)`` of one fixed shape, ``label`` an ``int`` (``-1``: no label);
    - ``num_channels: int`` (``C``; the backbone's input is matched to it);
    - ``labels``: a ``(N,)`` int64 tensor of every label (``-1``: none), so that label checks
      and evaluation need not decode the images;
    - ``has_labels: bool`` (False for unlabeled data: methods that need labels refuse it);
    - ``classes: list[str] | None`` (``None`` without labels).

    Only ``len`` and ``dataset[i]`` are strictly required: the other members, and every optional
    capability, are read through [`dataset_info`][contrastive.components.datasets.contract.dataset_info], which gives an absent one its default
    ([`DatasetInfo`][contrastive.components.datasets.contract.DatasetInfo] lists them).  Every built-in dataset has the four members and a new one
    should too.
    """

    num_channels: int
    labels: torch.Tensor
    has_labels: bool
    classes: list[str] | None

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]: ...


def no_paths() -> list[str]:
    """The default ``reading_now``: no file is known to be being read."""
    return []


def no_indices() -> list[int]:
    """The default ``unreadable_indices``: no image is known to be undecodable."""
    return []


@dataclass(frozen=True, eq=False)  # eq: tensor fields have no one truth value
class DatasetInfo:
    """What a dataset offers, as read by [`dataset_info`][contrastive.components.datasets.contract.dataset_info] when it is called (``skipped_files``
    grows while the data is read: read it again when you need it later).  Each field's default is
    what the loop and evaluation assume when the dataset lacks that member.

    - ``num_channels``: ``C`` of its images; None: unknown (the backbone's ``in_chans`` is assumed).
    - ``image_size``: ``(H, W)``; None: unknown.
    - ``labels``: ``(N,)`` int64 tensor of every label; None: read each item's label when needed.
    - ``has_labels``: False for unlabelled data; default True.
    - ``classes``: class names, a label being an index into them; default None.
    - ``labels_hint``: why unlabelled data has no labels (and how to give it some), for messages.
    - ``paths``: one path (or name) per image, saved by ``contrastive embed``; default None.
    - ``whole_image``: True when items are whole images squashed to the square (``image_folder``
      ``crop: whole``); the loop then reads items through ``load_item``.  Default False.
    - ``load_item``: ``load_item(i)`` -> ``(image, label, source_aspect)``, the item plus the
      width / height of what the image shows; needed when ``whole_image`` is True.
    - ``images``: the whole ``(N, C, H, W)`` uint8 tensor of an in-memory dataset (with
      ``labels``, feature extraction slices it instead of calling ``dataset[i]``); default None.
    - ``skipped_files``: bad files found so far, ``{"count": n, "first": [paths]}``, recorded in
      ``results.json``; default None.
    - ``reading_now``: ``reading_now()`` -> the paths being decoded right now, so that a dying
      DataLoader worker's file can be named; default: none known.
    - ``unreadable_indices``: ``unreadable_indices()`` -> indices of images found undecodable
      (each replaced by the next readable one), left out of ``contrastive embed``; default: none.
    - ``subset``: ``subset(indices)`` -> the same dataset restricted to those images (evaluation's
      hold-out); None: `contrastive.evaluation.holdout.IndexSubset` wraps it.
    - ``stream``: True for a stream (an ``IterableDataset``,
      [`stream`][contrastive.components.datasets.stream]).

    Two capabilities belong to the *factory* (the registered class or function), not the
    dataset, and are read there by evaluation: ``derive_eval_splits = False`` when its
    ``train``/``split`` argument does not name a train/test pair (``hf_dataset``), and
    ``test_split(args)`` naming a stream's test data (`contrastive.evaluation.data`).
    """

    num_channels: int | None = None
    image_size: tuple[int, int] | None = None
    labels: torch.Tensor | None = field(default=None, repr=False)
    has_labels: bool = True
    classes: list[str] | None = None
    labels_hint: str | None = None
    paths: Sequence[str] | None = field(default=None, repr=False)
    whole_image: bool = False
    load_item: Callable[[int], tuple[torch.Tensor, int, float]] | None = None
    images: torch.Tensor | None = field(default=None, repr=False)
    skipped_files: dict[str, Any] | None = None
    reading_now: Callable[[], list[str]] = no_paths
    unreadable_indices: Callable[[], list[int]] = no_indices
    subset: Callable[[list[int]], Any] | None = None
    stream: bool = False


CAPABILITIES: tuple[str, ...] = tuple(f.name for f in fields(DatasetInfo) if f.name != "stream")
"""The members [`dataset_info`][contrastive.components.datasets.contract.dataset_info] reads from a dataset (every [`DatasetInfo`][contrastive.components.datasets.contract.DatasetInfo] field but ``stream``)."""

_CALLABLE = ("load_item", "reading_now", "unreadable_indices", "subset")


def dataset_info(dataset: Any) -> DatasetInfo:
    """``dataset``'s capabilities (any object: subclassing nothing is fine), each absent or
    ``None`` one at its [`DatasetInfo`][contrastive.components.datasets.contract.DatasetInfo] default; a method that is not callable counts as
    absent, ``images`` counts only as a tensor, and the two flags are read as ``bool``.  Values
    are otherwise as the dataset gives them ([`contrastive.testing.check_dataset`][contrastive.testing.datasets.check_dataset] checks them)."""
    found: dict[str, Any] = {"stream": is_stream(dataset)}
    for name in CAPABILITIES:
        value = getattr(dataset, name, None)
        if value is None or (name in _CALLABLE and not callable(value)):
            continue
        if name in ("has_labels", "whole_image"):
            value = bool(value)
        elif name == "images" and not isinstance(value, torch.Tensor):
            continue
        found[name] = value
    return DatasetInfo(**found)


class DatasetView(Dataset):
    """Base of a wrapper that shows ``self.dataset`` differently (a subset, items with their
    index).  Each capability named in ``forwarded`` that the wrapper does not define itself is
    read from the wrapped dataset (absent there: absent here, so [`dataset_info`][contrastive.components.datasets.contract.dataset_info] gives its
    default).  A wrapper forwards only what stays true of it: a subset forwards ``classes`` but
    not ``images``, whose rows are the whole dataset's."""

    forwarded: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __getattr__(self, name: str) -> Any:
        # only called for names not found normally; ``dataset`` is absent while unpickling
        inner = self.__dict__.get("dataset")
        if name in type(self).forwarded and inner is not None:
            return getattr(inner, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __len__(self) -> int:
        return len(self.dataset)
