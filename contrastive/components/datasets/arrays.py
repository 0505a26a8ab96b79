"""In-memory datasets: ``digits``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``stl10``.

Each is a [`TensorImageDataset`][contrastive.components.datasets.arrays.TensorImageDataset]: the whole split preloaded as one ``(N, C, H, W)`` uint8
tensor (``images``) with its ``(N,)`` int64 ``labels``.  Fashion-MNIST is read from its IDX
files ([`read_idx`][contrastive.components.datasets.arrays.read_idx]); CIFAR and STL-10 go through torchvision, whose "not found or
corrupted" becomes a [`contrastive.errors.DataError`][contrastive.errors.DataError] naming the folder and the fix.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from contrastive.errors import DataError, InvalidArgumentsError


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


def check_size(name: str, image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise InvalidArgumentsError(f"{name}: image_size must be a positive int, got {image_size!r}")


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


#: The digits shipped in this package: ``images`` (1797, 8, 8) uint8 in 0..16, ``labels`` (1797,) uint8.
DIGITS_FILE = "digits.npz"


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The UCI optical-recognition digits, as scikit-learn bundles them (``load_digits``):
    ``(images (1797, 8, 8) uint8 0..16, labels (1797,) int64)``, read from the package's
    ``digits.npz`` (45 KB; see ``DIGITS_DATA.md`` beside it for the source and licence)."""
    import io
    from importlib.resources import files

    with np.load(io.BytesIO(files(__package__).joinpath(DIGITS_FILE).read_bytes())) as data:
        return data["images"], data["labels"].astype(np.int64)


class DigitsDataset(TensorImageDataset):
    """The handwritten digits scikit-learn bundles (1797 8×8 images, 10 classes), shipped in this
    package: no files, no download, no scikit-learn.

    Values 0..16 are scaled to 0..255 and resized (bilinear, antialiased) to
    ``(1, image_size, image_size)``.  The train/test split is stratified and fixed by ``seed``
    ([`contrastive.components.datasets.splits.train_test_indices`][contrastive.components.datasets.splits.train_test_indices], the split scikit-learn's ``train_test_split``
    draws); both splits keep the original order.
    """

    def __init__(self, train: bool = True, image_size: int = 32, test_fraction: float = 0.25, seed: int = 0) -> None:
        check_size("digits", image_size)
        if not 0.0 < float(test_fraction) < 1.0:
            raise InvalidArgumentsError(f"digits: test_fraction must lie strictly between 0 and 1, got {test_fraction}")
        from contrastive.components.datasets.splits import train_test_indices

        digits, targets = load_digits_arrays()
        try:
            train_idx, test_idx = train_test_indices(len(targets), float(test_fraction), seed, targets)
        except ValueError as exc:
            raise InvalidArgumentsError(f"digits: cannot split with test_fraction={test_fraction}: {exc}") from exc
        idx = np.sort(train_idx if train else test_idx)
        pixels = torch.from_numpy(digits[idx].astype(np.float32).reshape(-1, 1, 8, 8))
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
    header's sizes promise; anything else raises [`DataError`][contrastive.errors.DataError] naming the file.
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
        check_size("fashion_mnist", image_size)
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
        check_size("stl10", image_size)
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
