"""Folder datasets, decoded lazily with PIL: ``image_folder`` ([`ImageFolderDataset`][contrastive.components.datasets.folder.ImageFolderDataset]) and ``imagenet``.

Also what they need: listing image files ([`list_images`][contrastive.components.datasets.folder.list_images]), decoding and mode conversion,
and the bad-file bookkeeping kept in shared memory so that it works inside DataLoader worker
processes (``skipped_files``, ``reading_now()``; ``contrastive.training.data.guard_loader``
reports a worker that died with the file it was reading).
"""

from __future__ import annotations

import copy
import math
import multiprocessing
import os
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from contrastive.components.datasets.arrays import check_size
from contrastive.components.datasets.reporting import (
    REPORT_FIRST,
    WORKER_SLOTS,
    first_few,
    warn,
    warn_once,
    worker_slot,
)
from contrastive.errors import DataError, InvalidArgumentsError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CROPS = ("whole", "center")


def _check_crop(name: str, crop: Any) -> None:
    if crop not in CROPS:
        raise InvalidArgumentsError(
            f"{name}: crop must be 'whole' (the whole image squashed to image_size, for training) or "
            f"'center' (the centre square, for evaluation), got {crop!r}"
        )


def check_image_args(name: str, image_size: Any, channels: Any, strict: Any, crop: Any) -> None:
    """The arguments every decoding image dataset takes (``image_folder``, ``hf_dataset``,
    ``webdataset``): raise [`InvalidArgumentsError`][contrastive.errors.InvalidArgumentsError] naming ``name`` for a bad one."""
    check_size(name, image_size)
    _check_crop(name, crop)
    if not isinstance(strict, bool):
        raise InvalidArgumentsError(f"{name}: strict must be true or false, got {strict!r}")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise InvalidArgumentsError(f"{name}: channels must be 1 or 3, got {channels!r}")


# -- image folders ------------------------------------------------------------------------------
def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder: str, recursive: bool) -> list[str]:
    """Sorted paths of the image files in ``folder`` (and below it when ``recursive``).

    Hidden files and folders (``.name``) are skipped; symbolic links are followed once.
    """
    if not recursive:
        with os.scandir(folder) as entries:
            return sorted(e.path for e in entries if _is_image(e.name) and e.is_file())
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(os.path.join(dirpath, f) for f in filenames if _is_image(f))
    return sorted(found)


def to_mode(img, channels: int):
    """Convert any PIL mode to ``L`` (channels 1) or ``RGB`` (channels 3); alpha is dropped.

    High-bit-depth greyscale (``I;16*``, ``I``, ``F``) is scaled into 0..255 rather than clipped,
    which is what PIL's own ``convert`` would do: 16-bit data divided by 257, ``F`` in [0, 1]
    multiplied by 255, anything wider divided by its own maximum.
    """
    from PIL import Image

    target = "L" if channels == 1 else "RGB"
    if img.mode.startswith("I") or img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        peak = float(arr.max()) if arr.size else 0.0
        if img.mode.startswith("I;16") or (img.mode == "I" and 255 < peak <= 65535):
            arr = arr / 257.0
        elif img.mode == "F" and peak <= 1.0:
            arr = arr * 255.0
        elif peak > 255:
            arr = arr * (255.0 / peak)
        img = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))
    elif img.mode == "PA" or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    return img if img.mode == target else img.convert(target)


class UndecodableImage(Exception):
    """`decode_image` could not read the image (its ``__cause__``: PIL's error)."""


class ImageModeError(ValueError):
    """`decode_image` could not convert the image's ``mode`` to RGB / L."""

    def __init__(self, message: str, mode: str) -> None:
        super().__init__(message)
        self.mode = mode


def decode_image(source: Any, size: int, channels: int, whole: bool) -> tuple[torch.Tensor, float]:
    """Decode an image file (a path or a binary file object) into ``(image, source_aspect)``: a
    ``(channels, size, size)`` uint8 tensor and the width / height of what it shows.

    Converted to RGB (or L when ``channels`` is 1, see `to_mode`), EXIF orientation
    applied; ``whole``: the whole image squashed to the square (the aspect ratio returned is the
    original's), else the centre square (aspect 1.0).  A JPEG much larger than ``size`` is decoded
    at a reduced DCT scale (PIL ``draft``).  Raises `UndecodableImage` or
    `ImageModeError`.  The folder datasets, ``hf_dataset`` and ``webdataset`` all decode here.
    """
    from PIL import Image, ImageOps

    try:
        img = Image.open(source)
    except Exception as exc:  # PIL raises many types for damaged files
        raise UndecodableImage(str(exc)) from exc
    with img:
        try:
            w, h = img.size
            mode = "L" if channels == 1 else None
            if min(w, h) > size:  # JPEG: decode straight at a reduced DCT scale (a no-op for others)
                if whole:  # PIL picks the largest 1/2^k scale keeping both sides >= size
                    img.draft(mode, (size, size))
                else:  # the shorter side >= size
                    scale = size / min(w, h)
                    img.draft(mode, (math.ceil(w * scale), math.ceil(h * scale)))
            img.load()
            # the original's width / height as displayed: orientations 5-8 turn it by 90 degrees
            aspect = h / w if img.getexif().get(0x0112, 1) in (5, 6, 7, 8) else w / h
            ImageOps.exif_transpose(img, in_place=True)
        except Exception as exc:
            raise UndecodableImage(str(exc)) from exc
        try:
            converted = to_mode(img, channels)
        except ValueError as exc:
            raise ImageModeError(str(exc), img.mode) from exc
    if whole:
        resized = converted.resize((size, size), Image.Resampling.BILINEAR)  # squashed: aspect not kept
    else:
        w, h = converted.size
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        box = (left, top, left + side, top + side)
        resized = converted.resize((size, size), Image.Resampling.BILINEAR, box=box)
        aspect = 1.0  # an undistorted square
    tensor = torch.from_numpy(np.array(resized, dtype=np.uint8))
    tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()
    return tensor, float(aspect)


class ImageFolderDataset(Dataset):
    """Any folder tree of images, decoded lazily: ``(channels, image_size, image_size)`` uint8.

    Labelled when ``root`` holds no images directly but its immediate sub-folders do: the
    sub-folder names, sorted, are the classes (as torchvision's ImageFolder; sub-folders
    without images are ignored).  Images directly in ``root`` make the whole tree unlabeled
    (label −1, ``classes`` None).  ``labels``: ``null`` (default) decides by that layout,
    ``false`` reads any tree unlabeled (sub-folders that are not classes: years, albums),
    ``true`` requires class sub-folders.  ``recursive`` also takes images from deeper folders
    (below each class folder, or below ``root`` when unlabeled); symbolic links to folders are
    followed, each real folder read once (a link back up the tree is not followed again).
    Extensions: jpg jpeg png bmp gif webp tif tiff, any case.

    Each image is converted to RGB (or L when ``channels`` is 1), EXIF orientation applied, and
    brought to ``image_size`` × ``image_size`` as ``crop`` says:

    - ``whole`` (the default; for training): the *whole* image, resized to the square ignoring
      its aspect ratio ("squashed"), so that SimCLR's random resized crop can draw its boxes
      over the whole original image.  [`load_item`][contrastive.components.datasets.folder.ImageFolderDataset.load_item] also returns the original aspect ratio
      (width / height), with which the view pipeline un-squashes the crop boxes
      (``ViewPipeline.draw(x, count, source_aspect=...)``); `whole_image` is True and the
      training loop reads the data through ``contrastive.training.data.TrainingItems``.
    - ``center`` (evaluation's standard preprocessing): the shorter side resized to
      ``image_size`` and the centre square kept; the borders of non-square images are lost.

    Both resize bilinearly with antialiasing; a JPEG much larger than ``image_size`` is decoded
    at a reduced DCT scale (PIL ``draft``: 1/2, 1/4 or 1/8), the smallest that keeps the sides
    that matter at least ``image_size``.  Greyscale, RGBA, CMYK, palette and 16-bit images are
    converted, never skipped.

    Bad files: zero-byte files are dropped when the folder is scanned; a file that cannot be
    decoded (damaged, truncated, not an image) is skipped when it is read — the next readable
    image takes its place, so batches keep their size and the data order stays deterministic.
    Both are counted ([`skipped_files`][contrastive.components.datasets.folder.ImageFolderDataset.skipped_files], also in ``results.json``) and the first
    `REPORT_FIRST` paths are printed as warnings.  ``strict: true`` makes any bad file a
    [`DataError`][contrastive.errors.DataError] naming it instead.  The bookkeeping lives in shared memory, so it also
    works inside DataLoader worker processes, and a worker that dies (a decoder crash, the
    out-of-memory killer) is reported with the file it was reading (`guard_loader`).
    """

    _name = "image_folder"
    whole_image: bool  # crop == "whole": items are squashed whole images (see load_item); set per instance

    def __init__(
        self,
        root: str,
        image_size: int = 224,
        channels: int = 3,
        recursive: bool = True,
        strict: bool = False,
        crop: Literal["whole", "center"] = "whole",
        labels: bool | None = None,
    ) -> None:
        self._check_args(image_size, channels, strict, crop)
        if labels is not None and not isinstance(labels, bool):
            raise InvalidArgumentsError(f"{self._name}: labels must be true, false or null (from the layout), got {labels!r}")
        if not os.path.isdir(root):
            raise DataError(
                f"{self._name}: {root} does not exist or is not a folder; expected a folder of images "
                f"({' '.join(e[1:] for e in IMAGE_EXTENSIONS)}) or of class sub-folders holding them; "
                f"pass root: the path to such a folder"
            )
        wanted = labels
        paths, labels, classes = self._scan(root, recursive, use_folders=wanted is not False)
        if wanted and classes is None:
            raise DataError(
                f"{self._name}: {root} holds images directly, not in class sub-folders, and data.args.labels is true; "
                f"move them into one sub-folder per class, or set --data.args.labels null to train without labels"
            )
        if not paths:
            where = "anywhere below it" if recursive else "in it or in its immediate sub-folders"
            raise DataError(
                f"{self._name}: {root} holds no images {where} (looked for "
                f"{' '.join(e[1:] for e in IMAGE_EXTENSIONS)}); put images there or pass root: another folder"
            )
        empty = [i for i, path in enumerate(paths) if _size_or_zero(path) == 0]
        if empty and strict:
            raise DataError(
                f"{self._name}: {len(empty)} empty (zero-byte) or unreadable file(s) in {root}: "
                f"{first_few(paths[i] for i in empty)}; delete them, or set data.args.strict false to skip them"
            )
        empty_files = [paths[i] for i in empty]
        if empty:
            keep = sorted(set(range(len(paths))) - set(empty))
            paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
            warn_once(
                f"{self._name}: skipping {len(empty)} empty (zero-byte) file(s) in {root}: "
                f"{first_few(empty_files)}"
            )
            if not paths:
                raise DataError(f"{self._name}: every image file in {root} is empty (zero bytes); nothing to train on")
        hint = "data.args.labels is false" if wanted is False else "its images are not in class sub-folders"
        self._setup(root, paths, labels, classes, image_size, channels, strict, crop, empty_files, hint)

    def _check_args(self, image_size: int, channels: int, strict: bool, crop: str) -> None:
        check_image_args(self._name, image_size, channels, strict, crop)

    def _setup(
        self, root: str, paths: list[str], labels: list[int] | torch.Tensor, classes: list[str] | None, image_size: int,
        channels: int, strict: bool, crop: str, empty_files: list[str], labels_hint: str,
    ) -> None:
        """The attributes every lazily decoded dataset here has (``paths``: one name per image)."""
        self.root = root
        self.strict = strict
        self.empty_files = empty_files
        self.paths = paths
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.classes = classes
        self.has_labels = classes is not None
        # why there are no labels, for messages that skip or refuse supervised evaluation
        self.labels_hint = None if self.has_labels else labels_hint
        self.num_channels = channels
        self.image_size = (image_size, image_size)
        self.crop = crop
        self.whole_image = crop == "whole"
        # Shared with DataLoader workers: one byte per image (1: found unreadable) and, per worker,
        # the index being decoded (-1: idle) so that a worker's death can name its file.
        self._bad = multiprocessing.RawArray("b", len(paths))
        self._reading = multiprocessing.RawArray("q", WORKER_SLOTS)
        self._reading_view()[:] = -1

    @staticmethod
    def _scan(root: str, recursive: bool, use_folders: bool = True) -> tuple[list[str], list[int], list[str] | None]:
        with os.scandir(root) as entries:
            entries = sorted(entries, key=lambda e: e.name)
        if not use_folders or any(_is_image(e.name) and e.is_file() for e in entries):
            paths = list_images(root, recursive)
            return paths, [-1] * len(paths), None
        paths, labels, classes = [], [], []
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            found = list_images(entry.path, recursive)
            if found:
                paths.extend(found)
                labels.extend([len(classes)] * len(found))
                classes.append(entry.name)
        return paths, labels, classes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label, _ = self.load_item(index)
        return image, label

    def load_item(self, index: int) -> tuple[torch.Tensor, int, float]:
        """``(image, label, source_aspect)``: item ``index`` as `__getitem__` gives it, plus
        the width / height of what the image shows — the original's aspect ratio (after EXIF
        orientation) for ``crop: whole``, whose square ``image`` is that whole image squashed;
        1.0 for ``crop: center`` (an undistorted square).  Bad files are skipped or raise exactly
        as in `__getitem__` (the next readable image takes the place of a bad one)."""
        bad = self._bad_view()
        for step in range(len(self.paths)):
            current = (index + step) % len(self.paths)
            if bad[current]:
                continue
            slot = worker_slot()
            self._reading_view()[slot] = current
            try:
                image, aspect = self.read(current)
            except DataError as exc:
                if self.strict:
                    raise DataError(f"{exc} [data.args.strict is true; set it false to skip such files]") from exc
                bad[current] = 1
                count = int(bad.sum()) + len(self.empty_files)
                if count <= REPORT_FIRST:
                    warn(f"skipping {exc}" + (" (further bad files are counted, not listed)" if count == REPORT_FIRST else ""))
                continue
            finally:
                self._reading_view()[slot] = -1
            return image, int(self.labels[current]), aspect
        raise DataError(
            f"{self._name}: no file in {self.root} could be decoded ({len(self.paths)} tried, e.g. "
            f"{first_few(self.paths)}); check that they are images"
        )

    @property
    def skipped_files(self) -> dict[str, Any]:
        """Bad files found so far (in this process and its DataLoader workers): ``{"count": n,
        "first": [up to REPORT_FIRST paths]}``."""
        flagged = np.flatnonzero(self._bad_view())
        paths = self.empty_files + [self.paths[i] for i in flagged]
        return {"count": len(paths), "first": paths[:REPORT_FIRST]}

    def unreadable_indices(self) -> list[int]:
        """Indices of the images found undecodable so far (each was replaced by the next readable one)."""
        return np.flatnonzero(self._bad_view()).tolist()

    def reading_now(self) -> list[str]:
        """Paths being decoded right now by this process or its DataLoader workers."""
        return [self.paths[i] for i in self._reading_view() if 0 <= i < len(self.paths)]

    def _bad_view(self) -> np.ndarray:
        return np.frombuffer(self._bad, dtype=np.int8)

    def _reading_view(self) -> np.ndarray:
        return np.frombuffer(self._reading, dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if multiprocessing.context.get_spawning_popen() is None:
            # Pickled for anything but starting a worker (a copy, a cache): shared memory cannot
            # travel that way; the copy gets its own.
            state["_bad"] = bytearray(bytes(self._bad))
            state["_reading"] = bytearray(bytes(self._reading))
        return state

    def subset(self, indices: Iterable[int]) -> ImageFolderDataset:
        """The same dataset restricted to the images ``indices`` (in that order): same classes,
        arguments and zero-byte files reported, its own bad-file bookkeeping — a bad file is
        replaced by the next readable image of the subset, never by one outside it."""
        indices = list(indices)
        part = copy.copy(self)
        paths = self.paths  # a list, or a sequence with its own select (hf_dataset's row names)
        part.paths = paths.select(indices) if hasattr(paths, "select") else [paths[i] for i in indices]
        part.labels = self.labels[indices] if indices else self.labels[:0]
        part._bad = multiprocessing.RawArray("b", len(part.paths))
        part._reading = multiprocessing.RawArray("q", WORKER_SLOTS)
        part._reading_view()[:] = -1
        return part

    def load(self, path: str) -> torch.Tensor:
        """Decode the file at ``path`` into a ``(C, S, S)`` uint8 tensor (as ``crop`` says)."""
        return self.decode(path)[0]

    def read(self, index: int) -> tuple[torch.Tensor, float]:
        """``(image, source_aspect)`` of image ``index`` ([`decode`][contrastive.components.datasets.folder.ImageFolderDataset.decode] of its path), for [`load_item`][contrastive.components.datasets.folder.ImageFolderDataset.load_item]."""
        return self.decode(self.paths[index])

    def decode(self, path: str, source: Any = None) -> tuple[torch.Tensor, float]:
        """``(image (C, S, S) uint8, source_aspect)`` of the file at ``path`` (see [`load_item`][contrastive.components.datasets.folder.ImageFolderDataset.load_item]),
        or of ``source`` (a binary file object) named ``path``; the one method that decodes (a
        subclass with another decoder overrides it); raises [`DataError`][contrastive.errors.DataError] for a file that
        cannot be decoded."""
        try:
            return decode_image(source if source is not None else path, self.image_size[0], self.num_channels,
                                self.whole_image)
        except UndecodableImage as exc:
            raise self._unreadable(path, exc.__cause__ or exc) from exc.__cause__
        except ImageModeError as exc:
            raise DataError(f"{self._name}: cannot convert {path} (mode {exc.mode}) to RGB/L: {exc}") from exc

    def _unreadable(self, path: str, exc: Exception) -> DataError:
        return DataError(
            f"{self._name}: cannot read {path}: {type(exc).__name__}: {exc} (a damaged or non-image file; "
            f"delete it or move it out of {self.root})"
        )

    def __repr__(self) -> str:
        kinds = f"{len(self.classes)} classes" if self.classes is not None else "unlabeled"
        shape = f"{self.num_channels}x{self.image_size[0]}x{self.image_size[1]}"
        return f"{type(self).__name__}({self.root!r}, {len(self)} images, {shape}, {kinds}, crop={self.crop})"


def _size_or_zero(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class ImageNetDataset(ImageFolderDataset):
    """ImageNet in folder layout ``root/{train,val}/<wnid>/*.JPEG``: ``(3, image_size, image_size)`` uint8.

    Classes are the sorted wnids (``n01440764`` …), so train and val labels agree when both
    splits hold all 1000 folders.  The validation images must be sorted into wnid folders.
    ``crop`` as for ``image_folder``: ``whole`` (default, training: the whole image squashed to
    the square, its aspect ratio kept aside for the crop step) or ``center`` (evaluation).
    """

    _name = "imagenet"

    def __init__(
        self,
        root: str,
        split: Literal["train", "val"] = "train",
        image_size: int = 224,
        strict: bool = False,
        crop: Literal["whole", "center"] = "whole",
    ) -> None:
        _check_crop("imagenet", crop)
        if split not in ("train", "val"):
            raise InvalidArgumentsError(f"imagenet: split must be 'train' or 'val', got {split!r}")
        folder = os.path.join(root, split)
        layout = (
            f"expected ImageNet in folder layout {root}/train/<wnid>/*.JPEG and {root}/val/<wnid>/*.JPEG "
            f"(validation images sorted into their wnid folders, e.g. with the widely used valprep.sh)"
        )
        if not os.path.isdir(folder):
            raise DataError(
                f"imagenet: {folder} does not exist; {layout}; pass root: the folder holding train/ and val/"
            )
        super().__init__(folder, image_size=image_size, channels=3, recursive=True, strict=strict, crop=crop)
        if not self.has_labels:
            raise DataError(f"imagenet: {folder} holds images directly instead of in wnid folders; {layout}")
        self.split = split
