"""Built-in datasets.

Every dataset here is a map-style ``torch.utils.data.Dataset`` whose ``__getitem__(i)`` returns
``(image, label)``: ``image`` a ``torch.uint8`` tensor of fixed shape ``(C, H, W)`` and ``label``
an ``int`` (``-1`` for a sample without a label).  Each object also has

- ``num_channels: int`` (``C``) and ``image_size: tuple[int, int]`` (``(H, W)``),
- ``classes: list[str] | None`` (``None`` when the data has no labels),
- ``has_labels: bool``,
- ``labels``: a ``(N,)`` int64 tensor of every label, for evaluation without decoding images,
- ``paths: list[str]`` for file-based data (``image_folder``, ``imagenet``).

The folder datasets also take ``crop``: ``whole`` (default) squashes the whole image to the square
and keeps its aspect ratio aside for the crop step (``whole_image`` True; ``load_item(i)`` returns
``(image, label, source_aspect)``), ``center`` keeps the centre square (evaluation).

Array datasets (``digits``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``stl10``) are preloaded
as one ``(N, C, H, W)`` uint8 tensor; folder datasets decode lazily with PIL.  Every problem
with the data itself raises :class:`contrastive.errors.DataError` naming the path, what was
expected there and the fix; bad arguments raise :class:`InvalidArgumentsError`.
"""

from __future__ import annotations

import gzip
import math
import multiprocessing
import os
import sys
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from contrastive import hookimpl
from contrastive.errors import ContrastiveError, DataError, InvalidArgumentsError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


# -- preloaded tensors -------------------------------------------------------------------------
class TensorImageDataset(Dataset):
    """Images held in memory: ``images`` ``(N, C, H, W)`` uint8, ``labels`` ``(N,)`` int64."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str] | None) -> None:
        self.images = images
        self.labels = labels
        self.classes = classes
        self.has_labels = classes is not None
        self.num_channels = int(images.shape[1])
        self.image_size = (int(images.shape[2]), int(images.shape[3]))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].contiguous(), int(self.labels[index])

    def __repr__(self) -> str:
        c, (h, w) = self.num_channels, self.image_size
        kinds = f"{len(self.classes)} classes" if self.classes is not None else "unlabeled"
        return f"{type(self).__name__}({len(self)} images, {c}x{h}x{w}, {kinds})"


def _check_size(name: str, image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise InvalidArgumentsError(f"{name}: image_size must be a positive int, got {image_size!r}")


CROPS = ("whole", "center")


def _check_crop(name: str, crop: Any) -> None:
    if crop not in CROPS:
        raise InvalidArgumentsError(
            f"{name}: crop must be 'whole' (the whole image squashed to image_size, for training) or "
            f"'center' (the centre square, for evaluation), got {crop!r}"
        )


def resize_uint8(images: torch.Tensor, size: tuple[int, int], chunk: int = 2048) -> torch.Tensor:
    """Resize ``(N, C, H, W)`` uint8 to ``(N, C, *size)`` uint8 (bilinear, antialiased), in chunks."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    out = torch.empty((images.shape[0], images.shape[1], *size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].float()
        y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        out[start : start + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


class DigitsDataset(TensorImageDataset):
    """scikit-learn's bundled digits (1797 8×8 images, 10 classes), no files needed.

    Values 0..16 are scaled to 0..255 and resized (bilinear, antialiased) to
    ``(1, image_size, image_size)``.  The train/test split is stratified and fixed by ``seed``;
    both splits keep the original order.
    """

    def __init__(self, train: bool = True, image_size: int = 32, test_fraction: float = 0.25, seed: int = 0) -> None:
        _check_size("digits", image_size)
        if not 0.0 < float(test_fraction) < 1.0:
            raise InvalidArgumentsError(f"digits: test_fraction must lie strictly between 0 and 1, got {test_fraction}")
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        targets = np.asarray(bunch.target, dtype=np.int64)
        try:
            train_idx, test_idx = train_test_split(
                np.arange(len(targets)), test_size=float(test_fraction), stratify=targets, random_state=seed
            )
        except ValueError as exc:
            raise InvalidArgumentsError(f"digits: cannot split with test_fraction={test_fraction}: {exc}") from exc
        idx = np.sort(train_idx if train else test_idx)
        pixels = torch.from_numpy(np.asarray(bunch.data, dtype=np.float32)[idx].reshape(-1, 1, 8, 8))
        images = (pixels * (255.0 / 16.0)).round_().clamp_(0, 255).to(torch.uint8)
        super().__init__(
            resize_uint8(images, (image_size, image_size)),
            torch.from_numpy(targets[idx]),
            [str(d) for d in range(10)],
        )


# -- Fashion-MNIST ------------------------------------------------------------------------------
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
_FASHION_INSTALL = (
    "install Debian's dataset-fashion-mnist (apt-get install -y dataset-fashion-mnist) and pass "
    "root: /usr/share/datasets/fashion-mnist"
)
_FASHION_HINT = _FASHION_INSTALL + ", or set download: true where a network exists"


def read_idx(path: str, ndim: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (gzipped or not) into a uint8 array of ``ndim`` dims.

    Checks the magic number (``0x00000800 + ndim``) and that the data is exactly as long as the
    header's sizes promise; anything else raises :class:`DataError` naming the file.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path} is not a valid gzip file ({exc}); re-download or reinstall it") from exc
    expected_magic = 0x800 + ndim
    if len(data) < 4 or int.from_bytes(data[:4], "big") != expected_magic:
        found = f"0x{int.from_bytes(data[:4], 'big'):08x}" if len(data) >= 4 else f"only {len(data)} bytes"
        raise DataError(
            f"{path} is not an IDX file of {ndim}-d unsigned bytes: magic number {found}, expected "
            f"0x{expected_magic:08x}; re-download or reinstall it"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated inside its header ({len(data)} bytes); re-download or reinstall it")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    size = math.prod(dims)
    if len(data) - header != size:
        what = "truncated" if len(data) - header < size else "longer than its header says"
        raise DataError(
            f"{path} is {what}: sizes {dims} need {size} data bytes, found {len(data) - header}; "
            f"re-download or reinstall it"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find_fashion_file(root: str, stem: str) -> str | None:
    for folder in (root, os.path.join(root, "FashionMNIST", "raw")):
        for name in (stem + ".gz", stem):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    return None


class FashionMNISTDataset(TensorImageDataset):
    """Fashion-MNIST (60000 train / 10000 test, 10 classes) read from its IDX files.

    Looks in ``root`` and in torchvision's layout ``root/FashionMNIST/raw/`` for
    ``train-images-idx3-ubyte.gz`` etc. (gzipped or not).  Images ``(1, image_size, image_size)``
    uint8, resized (bilinear, antialiased) only when ``image_size != 28``.
    """

    def __init__(
        self,
        root: str = "/usr/share/datasets/fashion-mnist",
        train: bool = True,
        download: bool = False,
        image_size: int = 28,
    ) -> None:
        _check_size("fashion_mnist", image_size)
        prefix = "train" if train else "t10k"
        stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
        paths = [_find_fashion_file(root, s) for s in stems]
        if None in paths and download:
            self._download(root, train)
            paths = [_find_fashion_file(root, s) for s in stems]
        for stem, path in zip(stems, paths, strict=True):
            if path is None:
                where = f"{root} does not exist" if not os.path.isdir(root) else f"{root} has no {stem}.gz"
                raise DataError(
                    f"fashion_mnist: {where} (looked for {stem}.gz or {stem} in it and in its "
                    f"FashionMNIST/raw/); {_FASHION_HINT}"
                )
        images = read_idx(paths[0], 3)
        labels = read_idx(paths[1], 1)
        if len(images) != len(labels):
            raise DataError(
                f"fashion_mnist: {paths[0]} holds {len(images)} images but {paths[1]} holds {len(labels)} "
                f"labels; the files come from different releases or are damaged: re-download or reinstall them"
            )
        if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
            raise DataError(f"fashion_mnist: {paths[1]} holds label {int(labels.max())}; expected 0..9")
        tensor = torch.from_numpy(images.copy()).unsqueeze(1)
        super().__init__(
            resize_uint8(tensor, (image_size, image_size)),
            torch.from_numpy(labels.astype(np.int64)),
            list(FASHION_MNIST_CLASSES),
        )
        self.root = root

    @staticmethod
    def _download(root: str, train: bool) -> None:
        from torchvision.datasets import FashionMNIST

        try:
            FashionMNIST(root, train=train, download=True)
        except (OSError, RuntimeError) as exc:
            raise DataError(
                f"fashion_mnist: downloading into {os.path.abspath(root)}/FashionMNIST/raw failed: {exc}; "
                f"pass a writable root where a network exists, or {_FASHION_INSTALL}"
            ) from exc


# -- torchvision-backed -------------------------------------------------------------------------
def _torchvision_dataset(name: str, cls, root: str, download: bool, archive: str, **kwargs):
    """Build the torchvision dataset ``cls``; turn its 'not found or corrupted' into DataError."""
    try:
        return cls(root, download=download, **kwargs)
    except (RuntimeError, OSError) as exc:
        folder = os.path.join(os.path.abspath(root), cls.base_folder)
        files = [f for f, _ in cls.train_list + cls.test_list] + (
            [cls.meta["filename"]] if hasattr(cls, "meta") else []
        )
        missing = [f for f in files if not os.path.isfile(os.path.join(folder, f))]
        if not os.path.isdir(folder):
            state = "does not exist"
        elif missing:
            state = "lacks " + ", ".join(missing)
        else:
            state = "has files whose checksums do not match (a corrupt or partial download?)"
        action = "the download failed" if download else "download: false"
        raise DataError(
            f"{name}: {folder} {state} ({action}; torchvision said: {exc}); set download: true where a "
            f"network exists, or extract {archive} into {os.path.abspath(root)}"
        ) from exc


class CIFAR10Dataset(TensorImageDataset):
    """CIFAR-10 through torchvision (``root/cifar-10-batches-py``): ``(3, 32, 32)`` uint8, 10 classes."""

    _name, _torchvision, _archive = "cifar10", "CIFAR10", "cifar-10-python.tar.gz"

    def __init__(self, root: str = "data/", train: bool = True, download: bool = False) -> None:
        from torchvision import datasets

        cls = getattr(datasets, self._torchvision)
        tv = _torchvision_dataset(self._name, cls, root, download, self._archive, train=train)
        images = torch.from_numpy(np.ascontiguousarray(tv.data.transpose(0, 3, 1, 2)))  # NHWC -> NCHW
        super().__init__(images, torch.as_tensor(tv.targets, dtype=torch.int64), list(tv.classes))
        self.root = root


class CIFAR100Dataset(CIFAR10Dataset):
    """CIFAR-100 through torchvision (``root/cifar-100-python``): ``(3, 32, 32)`` uint8, 100 fine classes."""

    _name, _torchvision, _archive = "cifar100", "CIFAR100", "cifar-100-python.tar.gz"


STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


class STL10Dataset(TensorImageDataset):
    """STL-10 through torchvision (``root/stl10_binary``): ``(3, image_size, image_size)`` uint8.

    ``split`` ``unlabeled`` (100000 images, label −1, ``classes`` None), ``train`` (5000),
    ``test`` (8000) or ``train+unlabeled`` (train first; the unlabeled part has label −1).
    Note torchvision checks *all five* files of ``stl10_binary`` whatever the split.  Without
    resizing, the images stay a strided view of torchvision's array (no 2.7 GB copy).
    """

    def __init__(
        self,
        root: str = "data/",
        split: Literal["unlabeled", "train", "test", "train+unlabeled"] = "unlabeled",
        download: bool = False,
        image_size: int = 96,
    ) -> None:
        _check_size("stl10", image_size)
        splits = ("unlabeled", "train", "test", "train+unlabeled")
        if split not in splits:
            raise InvalidArgumentsError(f"stl10: split must be one of {', '.join(splits)}; got {split!r}")
        from torchvision.datasets import STL10

        tv = _torchvision_dataset("stl10", STL10, root, download, "stl10_binary.tar.gz", split=split)
        labels = np.asarray(tv.labels).astype(np.int64)
        if labels.size and (labels.max() > 9 or labels.min() < -1 or (split != "unlabeled" and labels[0] < 0)):
            raise DataError(f"stl10: {os.path.abspath(root)}/stl10_binary holds labels outside 1..10; re-download it")
        images = resize_uint8(torch.from_numpy(tv.data), (image_size, image_size))
        classes = None if split == "unlabeled" else list(getattr(tv, "classes", STL10_CLASSES))
        super().__init__(images, torch.from_numpy(labels), classes)
        self.root = root


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


def _to_mode(img, channels: int):
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


class ImageFolderDataset(Dataset):
    """Any folder tree of images, decoded lazily: ``(channels, image_size, image_size)`` uint8.

    Labelled when ``root`` holds no images directly but its immediate sub-folders do: the
    sub-folder names, sorted, are the classes (as torchvision's ImageFolder; sub-folders
    without images are ignored).  Images directly in ``root`` make the whole tree unlabeled
    (label −1, ``classes`` None).  ``recursive`` also takes images from deeper folders (below
    each class folder, or below ``root`` when unlabeled).  Extensions: jpg jpeg png bmp gif
    webp tif tiff, any case.

    Each image is converted to RGB (or L when ``channels`` is 1), EXIF orientation applied, and
    brought to ``image_size`` × ``image_size`` as ``crop`` says:

    - ``whole`` (the default; for training): the *whole* image, resized to the square ignoring
      its aspect ratio ("squashed"), so that SimCLR's random resized crop can draw its boxes
      over the whole original image.  :meth:`load_item` also returns the original aspect ratio
      (width / height), with which the view pipeline un-squashes the crop boxes
      (``ViewPipeline.draw(x, count, source_aspect=...)``); :attr:`whole_image` is True and the
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
    Both are counted (:attr:`skipped_files`, also in ``results.json``) and the first
    :data:`REPORT_FIRST` paths are printed as warnings.  ``strict: true`` makes any bad file a
    :class:`DataError` naming it instead.  The bookkeeping lives in shared memory, so it also
    works inside DataLoader worker processes, and a worker that dies (a decoder crash, the
    out-of-memory killer) is reported with the file it was reading (:func:`guard_loader`).
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
    ) -> None:
        _check_size(self._name, image_size)
        _check_crop(self._name, crop)
        if not isinstance(strict, bool):
            raise InvalidArgumentsError(f"{self._name}: strict must be true or false, got {strict!r}")
        if channels not in (1, 3) or isinstance(channels, bool):
            raise InvalidArgumentsError(f"{self._name}: channels must be 1 or 3, got {channels!r}")
        if not os.path.isdir(root):
            raise DataError(
                f"{self._name}: {root} does not exist or is not a folder; expected a folder of images "
                f"({' '.join(e[1:] for e in IMAGE_EXTENSIONS)}) or of class sub-folders holding them; "
                f"pass root: the path to such a folder"
            )
        paths, labels, classes = self._scan(root, recursive)
        if not paths:
            where = "anywhere below it" if recursive else "in it or in its immediate sub-folders"
            raise DataError(
                f"{self._name}: {root} holds no images {where} (looked for "
                f"{' '.join(e[1:] for e in IMAGE_EXTENSIONS)}); put images there or pass root: another folder"
            )
        self.root = root
        self.strict = strict
        empty = [i for i, path in enumerate(paths) if _size_or_zero(path) == 0]
        if empty and strict:
            raise DataError(
                f"{self._name}: {len(empty)} empty (zero-byte) or unreadable file(s) in {root}: "
                f"{_first(paths[i] for i in empty)}; delete them, or set data.args.strict false to skip them"
            )
        self.empty_files = [paths[i] for i in empty]
        if empty:
            keep = sorted(set(range(len(paths))) - set(empty))
            paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
            _warn(
                f"{self._name}: skipping {len(empty)} empty (zero-byte) file(s) in {root}: "
                f"{_first(self.empty_files)}"
            )
            if not paths:
                raise DataError(f"{self._name}: every image file in {root} is empty (zero bytes); nothing to train on")
        self.paths = paths
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.classes = classes
        self.has_labels = classes is not None
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
    def _scan(root: str, recursive: bool) -> tuple[list[str], list[int], list[str] | None]:
        with os.scandir(root) as entries:
            entries = sorted(entries, key=lambda e: e.name)
        if any(_is_image(e.name) and e.is_file() for e in entries):
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
        """``(image, label, source_aspect)``: item ``index`` as :meth:`__getitem__` gives it, plus
        the width / height of what the image shows — the original's aspect ratio (after EXIF
        orientation) for ``crop: whole``, whose square ``image`` is that whole image squashed;
        1.0 for ``crop: center`` (an undistorted square).  Bad files are skipped or raise exactly
        as in :meth:`__getitem__` (the next readable image takes the place of a bad one)."""
        bad = self._bad_view()
        for step in range(len(self.paths)):
            current = (index + step) % len(self.paths)
            if bad[current]:
                continue
            slot = _worker_slot()
            self._reading_view()[slot] = current
            try:
                image, aspect = self.decode(self.paths[current])
            except DataError as exc:
                if self.strict:
                    raise DataError(f"{exc} [data.args.strict is true; set it false to skip such files]") from exc
                bad[current] = 1
                count = int(bad.sum()) + len(self.empty_files)
                if count <= REPORT_FIRST:
                    _warn(f"skipping {exc}" + (" (further bad files are counted, not listed)" if count == REPORT_FIRST else ""))
                continue
            finally:
                self._reading_view()[slot] = -1
            return image, int(self.labels[current]), aspect
        raise DataError(
            f"{self._name}: no file in {self.root} could be decoded ({len(self.paths)} tried, e.g. "
            f"{_first(self.paths)}); check that they are images"
        )

    @property
    def skipped_files(self) -> dict[str, Any]:
        """Bad files found so far (in this process and its DataLoader workers): ``{"count": n,
        "first": [up to REPORT_FIRST paths]}``."""
        flagged = np.flatnonzero(self._bad_view())
        paths = self.empty_files + [self.paths[i] for i in flagged]
        return {"count": len(paths), "first": paths[:REPORT_FIRST]}

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

    def load(self, path: str) -> torch.Tensor:
        """Decode the file at ``path`` into a ``(C, S, S)`` uint8 tensor (as ``crop`` says)."""
        return self.decode(path)[0]

    def decode(self, path: str) -> tuple[torch.Tensor, float]:
        """``(image (C, S, S) uint8, source_aspect)`` of the file at ``path`` (see :meth:`load_item`);
        the one method that reads a file (a subclass with another decoder overrides it); raises
        :class:`DataError` for a file that cannot be decoded."""
        from PIL import Image, ImageOps

        size = self.image_size[0]
        try:
            img = Image.open(path)
        except Exception as exc:  # PIL raises many types for damaged files
            raise self._unreadable(path, exc) from exc
        with img:
            try:
                w, h = img.size
                mode = "L" if self.num_channels == 1 else None
                if min(w, h) > size:  # JPEG: decode straight at a reduced DCT scale (a no-op for others)
                    if self.whole_image:  # PIL picks the largest 1/2^k scale keeping both sides >= size
                        img.draft(mode, (size, size))
                    else:  # the shorter side >= size
                        scale = size / min(w, h)
                        img.draft(mode, (math.ceil(w * scale), math.ceil(h * scale)))
                img.load()
                # the original's width / height as displayed: orientations 5-8 turn it by 90 degrees
                aspect = h / w if img.getexif().get(0x0112, 1) in (5, 6, 7, 8) else w / h
                ImageOps.exif_transpose(img, in_place=True)
            except Exception as exc:
                raise self._unreadable(path, exc) from exc
            try:
                converted = _to_mode(img, self.num_channels)
            except ValueError as exc:
                raise DataError(f"{self._name}: cannot convert {path} (mode {img.mode}) to RGB/L: {exc}") from exc
        if self.whole_image:
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

    def _unreadable(self, path: str, exc: Exception) -> DataError:
        return DataError(
            f"{self._name}: cannot read {path}: {type(exc).__name__}: {exc} (a damaged or non-image file; "
            f"delete it or move it out of {self.root})"
        )

    def __repr__(self) -> str:
        kinds = f"{len(self.classes)} classes" if self.classes is not None else "unlabeled"
        shape = f"{self.num_channels}x{self.image_size[0]}x{self.image_size[1]}"
        return f"{type(self).__name__}({self.root!r}, {len(self)} images, {shape}, {kinds}, crop={self.crop})"


REPORT_FIRST = 5  # bad files listed by name; the rest are counted
WORKER_SLOTS = 257  # slot 0: the main process; 1..256: DataLoader workers (id modulo 256)


def _size_or_zero(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _first(paths: Iterable[str], n: int = REPORT_FIRST) -> str:
    paths = list(paths)
    return ", ".join(paths[:n]) + (f" and {len(paths) - n} more" if len(paths) > n else "")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _worker_slot() -> int:
    info = torch.utils.data.get_worker_info()
    return 0 if info is None else 1 + info.id % (WORKER_SLOTS - 1)


def _worker_message(exc: BaseException) -> str:
    """The original one-line message of an error that torch re-raised from a DataLoader worker
    (torch prefixes it with 'Caught X in DataLoader worker process N' and the worker's traceback)."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    name = type(exc).__name__
    for prefix in (f"{type(exc).__module__}.{name}: ", f"{name}: "):
        if last.startswith(prefix):
            return last[len(prefix) :]
    return last


def _shut_down(iterator: Any) -> None:
    """Stop a failed DataLoader iterator's workers now.  While the error travels up, its traceback
    keeps the iterator alive, and with it the worker pids that PyTorch's SIGCHLD handler watches:
    any later child exit (of an unrelated subprocess) would then raise "DataLoader worker killed"
    again, at a random point of the main process."""
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if callable(shutdown):
        try:
            shutdown()
        except Exception:  # noqa: BLE001  best effort: the original error is the one to report
            pass


def guard_loader(batches: Iterable, dataset: Any) -> Iterator:
    """Iterate ``batches`` (a DataLoader); report data errors raised inside worker processes as
    their own one-line message, and a worker that died with the file it was reading (when the
    dataset can tell, as :class:`ImageFolderDataset` can: ``reading_now()``)."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except ContrastiveError as exc:
            _shut_down(iterator)
            if "Original Traceback" not in str(exc):
                raise
            raise type(exc)(_worker_message(exc)) from None
        except RuntimeError as exc:
            _shut_down(iterator)
            text = str(exc)
            if "DataLoader worker" not in text or ("exited unexpectedly" not in text and "killed by signal" not in text):
                raise
            reading = dataset.reading_now() if hasattr(dataset, "reading_now") else []
            where = f"while reading {_first(reading)}" if reading else "(the file it was reading is not known)"
            raise DataError(
                f"a data loader worker died {where}: {text.splitlines()[0]}. A file that crashes the decoder "
                f"or exhausts memory: remove or re-encode it; rerun with --trainer.num_workers 0 to see the error "
                f"in the main process"
            ) from None
        yield batch


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


@hookimpl
def contrastive_register(registries):
    registries.datasets.register("digits", DigitsDataset)
    registries.datasets.register("fashion_mnist", FashionMNISTDataset)
    registries.datasets.register("cifar10", CIFAR10Dataset)
    registries.datasets.register("cifar100", CIFAR100Dataset)
    registries.datasets.register("stl10", STL10Dataset)
    registries.datasets.register("image_folder", ImageFolderDataset)
    registries.datasets.register("imagenet", ImageNetDataset)
