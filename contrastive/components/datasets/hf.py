"""``hf_dataset``: images from a Hugging Face ``datasets`` dataset ([`HFImageDataset`][contrastive.components.datasets.hf.HFImageDataset]), saved
with ``save_to_disk``, a local folder of data files, or a dataset on the Hub.  Needs the optional
``datasets`` package (``pip install datasets``, or the ``hf`` extra of contrastive-ssl)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from contrastive.components.datasets.folder import ImageFolderDataset
from contrastive.errors import DataError, InvalidArgumentsError

INSTALL = "pip install datasets (or pip install 'contrastive-ssl[hf]')"
#: Files ``save_to_disk`` writes: a folder holding one is read with ``load_from_disk``.
SAVED_MARKERS = ("state.json", "dataset_dict.json")


def import_datasets():
    """The ``datasets`` module, or a one-line [`DataError`][contrastive.errors.DataError] saying how to install it."""
    try:
        import datasets
    except ImportError as exc:
        raise DataError(f"hf_dataset needs the Hugging Face datasets package, which is not installed: {INSTALL}") from exc
    return datasets


class RowNames(Sequence):
    """``"PATH[SPLIT][ROW]"`` for each of ``rows`` (the dataset's row numbers), made on demand."""

    def __init__(self, prefix: str, rows: np.ndarray) -> None:
        self.prefix, self.rows = prefix, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return f"{self.prefix}[{int(self.rows[index])}]"

    def select(self, indices: list[int]) -> RowNames:
        """The names of the images ``indices`` (for ``subset``)."""
        return RowNames(self.prefix, self.rows[indices] if len(indices) else self.rows[:0])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class HFImageDataset(ImageFolderDataset):
    """The images of a Hugging Face dataset: ``(channels, image_size, image_size)`` uint8, decoded
    lazily with PIL exactly as ``image_folder`` decodes files (modes converted, EXIF orientation
    applied, ``crop`` whole or center, undecodable images skipped and counted unless ``strict``).

    ``path``: a folder written by ``save_to_disk`` (read with ``load_from_disk``; of a
    ``DatasetDict`` the ``split`` is taken), any other local folder of data files, or a Hub name
    (both read with ``load_dataset(path, name=config, split=split, revision=revision)``).
    ``image_column``: the column of images (default: the one column whose feature is ``Image``);
    ``label_column``: the column of labels (default: the one ``ClassLabel`` column, if there is
    exactly one; ``false``: no labels).  A ``ClassLabel`` column's names become ``classes``;
    integer labels are their own classes; string labels are numbered in sorted order.  A
    dataset's own loading script is never run: ``trust_remote_code`` is refused.
    ``paths`` names each image ``PATH[SPLIT][ROW]``.

    Evaluation holds out part of it (``eval.holdout``) unless the recipe names ``eval.test_data``
    (e.g. the same dataset with ``split: test``).
    """

    _name = "hf_dataset"
    #: ``split`` selects the data to train on; evaluation does not assume a ``test`` split exists.
    derive_eval_splits = False

    def __init__(
        self,
        path: str,
        split: str = "train",
        image_column: str | None = None,
        label_column: str | Literal[False] | None = None,
        image_size: int = 224,
        channels: int = 3,
        crop: Literal["whole", "center"] = "whole",
        strict: bool = False,
        config: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if trust_remote_code is not False:
            raise InvalidArgumentsError(
                "hf_dataset: trust_remote_code is refused: contrastive never runs a dataset's own Python code; use a "
                "dataset stored as data files (Parquet, Arrow, images) or one written with save_to_disk"
            )
        if not isinstance(path, str) or not path:
            raise InvalidArgumentsError(f"hf_dataset: path must be a folder or a Hub dataset name, got {path!r}")
        self._check_args(image_size, channels, strict, crop)
        datasets = import_datasets()
        data = self._load(datasets, path, split, config, revision)
        if len(data) == 0:
            raise DataError(f"hf_dataset: split '{split}' of {path} has no rows; pass another --data.args.split")
        features = data.features
        image_column = self._image_column(datasets, features, image_column, path)
        labels_off = label_column is False
        label_column = self._label_column(datasets, features, label_column, path)
        labels, classes = self._labels(datasets, data, label_column, path)
        self.split, self.image_column, self.label_column = split, image_column, label_column
        # decode=False: the encoded bytes, which decode() reads like a file (draft, EXIF, modes)
        self._images = data.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
        class_labels = [name for name, feature in features.items() if isinstance(feature, datasets.ClassLabel)]
        found = "no ClassLabel column" if not class_labels else f"{len(class_labels)} ClassLabel columns"
        hint = ("data.args.label_column is false" if labels_off else
                f"{path} has {found} (set --data.args.label_column COLUMN; columns: {', '.join(features)})")
        prefix = f"{path}[{split}]"
        self._setup(path, RowNames(prefix, np.arange(len(data))), labels, classes, image_size, channels, strict, crop, [], hint)

    @staticmethod
    def _load(datasets, path: str, split: str, config: str | None, revision: str | None):
        saved = os.path.isdir(path) and any(os.path.isfile(os.path.join(path, m)) for m in SAVED_MARKERS)
        try:
            if saved:
                data = datasets.load_from_disk(path)
            else:
                data = datasets.load_dataset(path, name=config, split=split, revision=revision)
        except Exception as exc:  # noqa: BLE001  datasets raises many types (not found, offline, bad split)
            where = "the folder" if os.path.isdir(path) else ("the local path" if os.path.sep in path else "the Hub dataset")
            raise DataError(
                f"hf_dataset: cannot load {where} {path!r} (split {split!r}): {_first_line(exc)}; check data.args.path "
                f"and data.args.split"
            ) from None
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise DataError(
                    f"hf_dataset: {path} has no split '{split}' (its splits: {', '.join(data)}); pass --data.args.split NAME"
                )
            data = data[split]
        if not isinstance(data, datasets.Dataset):
            raise DataError(f"hf_dataset: {path} is a {type(data).__name__}, not a map-style datasets.Dataset")
        return data

    @staticmethod
    def _describe(features) -> str:
        return ", ".join(f"{name} ({type(feature).__name__})" for name, feature in features.items())

    def _image_column(self, datasets, features, wanted: str | None, path: str) -> str:
        images = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
        if wanted is not None:
            if wanted not in features:
                raise DataError(f"hf_dataset: {path} has no column '{wanted}' (its columns: {self._describe(features)}); "
                                f"pass --data.args.image_column NAME")
            if not isinstance(features[wanted], datasets.Image):
                raise DataError(f"hf_dataset: column '{wanted}' of {path} holds {type(features[wanted]).__name__}, not "
                                f"Image (its columns: {self._describe(features)})")
            return wanted
        if len(images) != 1:
            found = "no Image column" if not images else f"{len(images)} Image columns"
            raise DataError(f"hf_dataset: {path} has {found} (its columns: {self._describe(features)}); "
                            f"pass --data.args.image_column NAME")
        return images[0]

    def _label_column(self, datasets, features, wanted: str | Literal[False] | None, path: str) -> str | None:
        if wanted is False:
            return None
        if wanted is None:
            found = [name for name, feature in features.items() if isinstance(feature, datasets.ClassLabel)]
            return found[0] if len(found) == 1 else None
        if wanted not in features:
            raise DataError(f"hf_dataset: {path} has no column '{wanted}' (its columns: {self._describe(features)}); "
                            f"pass --data.args.label_column NAME, or false for no labels")
        return wanted

    @staticmethod
    def _labels(datasets, data, column: str | None, path: str) -> tuple[torch.Tensor, list[str] | None]:
        """``(labels (N,) int64, classes)``; ``(-1s, None)`` without a label column."""
        if column is None:
            return torch.full((len(data),), -1, dtype=torch.int64), None
        feature = data.features[column]
        values = list(data[column])
        if isinstance(feature, datasets.ClassLabel):
            return torch.as_tensor(values, dtype=torch.int64), list(feature.names)
        dtype = getattr(feature, "dtype", None)
        if isinstance(feature, datasets.Value) and dtype is not None and dtype.startswith(("int", "uint")):
            labels = torch.as_tensor(values, dtype=torch.int64)
            return labels, [str(c) for c in range(int(labels.max()) + 1 if len(labels) else 0)]
        if isinstance(feature, datasets.Value) and dtype in ("string", "large_string"):
            classes = sorted({v for v in values if v is not None})
            index = {c: i for i, c in enumerate(classes)}
            return torch.as_tensor([index.get(v, -1) for v in values], dtype=torch.int64), classes
        raise DataError(f"hf_dataset: label column '{column}' of {path} holds {feature}, not class labels "
                        f"(ClassLabel, integers or strings); pass another --data.args.label_column, or false")

    def read(self, index: int) -> tuple[torch.Tensor, float]:
        row = int(self.paths.rows[index])
        try:
            value = self._images[row][self.image_column]
        except Exception as exc:  # noqa: BLE001  a damaged shard
            raise self._unreadable(self.paths[index], exc) from exc
        if value is None:
            raise self._unreadable(self.paths[index], ValueError("the row has no image"))
        if value.get("bytes"):
            return self.decode(self.paths[index], io.BytesIO(value["bytes"]))
        if value.get("path"):
            return self.decode(value["path"])
        raise self._unreadable(self.paths[index], ValueError("the row's image has neither bytes nor a path"))

    def _unreadable(self, path: str, exc: Exception) -> DataError:
        return DataError(f"{self._name}: cannot read {path}: {type(exc).__name__}: {exc} (a damaged image in the dataset)")

    def __repr__(self) -> str:
        kinds = f"{len(self.classes)} classes" if self.classes is not None else "unlabeled"
        return f"{type(self).__name__}({self.root!r}, split={self.split!r}, {len(self)} images, {kinds}, crop={self.crop})"
