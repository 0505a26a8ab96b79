"""Built-in datasets, on tiny files written to tmp_path (nothing is downloaded)."""

from __future__ import annotations

import gzip
import os
import pickle
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive.components import datasets as ds
from contrastive.errors import DataError, InvalidArgumentsError
from contrastive.registry import Registries

FASHION_ROOT = "/usr/share/datasets/fashion-mnist"


def _check_sample(dataset, index=0):
    image, label = dataset[index]
    assert isinstance(image, torch.Tensor) and image.dtype == torch.uint8
    assert tuple(image.shape) == (dataset.num_channels, *dataset.image_size)
    assert isinstance(label, int)
    return image, label


# -- registration ---------------------------------------------------------------------------------
def test_hook_registers_every_builtin_and_hints_are_checkable():
    regs = Registries()
    ds.contrastive_register(registries=regs)
    assert regs.datasets.names() == [
        "cifar10", "cifar100", "digits", "fashion_mnist", "hf_dataset", "image_folder", "imagenet", "shapes", "stl10",
        "webdataset",
    ]  # fmt: skip
    regs.datasets.check_args("stl10", {"split": "train+unlabeled", "image_size": 64})
    with pytest.raises(InvalidArgumentsError, match="one of"):
        regs.datasets.check_args("stl10", {"split": "validation"})
    with pytest.raises(InvalidArgumentsError, match="root"):
        regs.datasets.check_args("image_folder", {})
    assert len(regs.datasets.build("digits", image_size=8, train=False)) == 450


# -- digits ---------------------------------------------------------------------------------------
def test_digits_shapes_split_and_determinism():
    train, test = ds.DigitsDataset(train=True), ds.DigitsDataset(train=False)
    assert (len(train), len(test)) == (1347, 450)
    image, label = _check_sample(train)
    assert image.shape == (1, 32, 32) and 0 <= label <= 9
    assert train.num_channels == 1 and train.image_size == (32, 32)
    assert train.classes == [str(d) for d in range(10)] and train.has_labels
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    # stratified: every class in both splits, close to 3:1
    counts_train = torch.bincount(train.labels, minlength=10)
    counts_test = torch.bincount(test.labels, minlength=10)
    assert ((counts_train / (counts_train + counts_test) - 0.75).abs() < 0.02).all()
    again = ds.DigitsDataset(train=True)
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)
    other = ds.DigitsDataset(train=True, seed=1)
    assert not torch.equal(other.labels, train.labels)


def test_the_shipped_digits_are_scikit_learns_and_split_as_it_split_them():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import train_test_split

    images, labels = ds.arrays.load_digits_arrays()
    bunch = sklearn_datasets.load_digits()
    assert np.array_equal(images, bunch.images) and np.array_equal(labels, bunch.target)
    for seed, fraction in ((0, 0.25), (3, 0.4)):
        kept, _ = train_test_split(np.arange(1797), test_size=fraction, stratify=bunch.target, random_state=seed)
        train = ds.DigitsDataset(train=True, image_size=8, test_fraction=fraction, seed=seed)
        assert train.labels.tolist() == bunch.target[np.sort(kept)].tolist()  # the split earlier runs had
        expected = (torch.from_numpy(bunch.data[np.sort(kept)]).reshape(-1, 1, 8, 8) * 255 / 16).round().to(torch.uint8)
        assert torch.equal(train.images, expected)


def test_digits_need_no_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if it were not installed
    assert len(ds.DigitsDataset(train=False, image_size=8)) == 450


def test_digits_native_size_is_the_scaled_original():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    load_digits = sklearn_datasets.load_digits

    both = torch.cat([ds.DigitsDataset(train=t, image_size=8, test_fraction=0.5).images for t in (True, False)])
    original = torch.from_numpy(load_digits().data).reshape(-1, 1, 8, 8)
    expected = (original * 255 / 16).round().to(torch.uint8)
    assert both.shape == expected.shape
    # same multiset of images (the split only reorders)
    assert sorted(map(bytes, both.flatten(1).numpy())) == sorted(map(bytes, expected.flatten(1).numpy()))


def test_digits_rejects_bad_arguments():
    with pytest.raises(InvalidArgumentsError):
        ds.DigitsDataset(test_fraction=1.5)
    with pytest.raises(InvalidArgumentsError):
        ds.DigitsDataset(image_size=0)
    with pytest.raises(InvalidArgumentsError, match="cannot split"):
        ds.DigitsDataset(test_fraction=0.001)  # fewer test samples than classes


# -- fashion_mnist --------------------------------------------------------------------------------
def _idx_bytes(array: np.ndarray) -> bytes:
    header = (0x800 + array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_fashion(folder, n_train=6, n_test=4, compress=True, size=28):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        arrays[prefix] = (images, labels)
        for stem, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = _idx_bytes(array)
            if compress:
                with gzip.open(os.path.join(folder, stem + ".gz"), "wb") as f:
                    f.write(data)
            else:
                with open(os.path.join(folder, stem), "wb") as f:
                    f.write(data)
    return arrays


def test_fashion_mnist_flat_gzip_layout(tmp_path):
    arrays = _write_fashion(tmp_path)
    train = ds.FashionMNISTDataset(root=str(tmp_path))
    test = ds.FashionMNISTDataset(root=str(tmp_path), train=False)
    assert (len(train), len(test)) == (6, 4)
    image, label = _check_sample(train, 3)
    assert image.shape == (1, 28, 28) and label == 3
    assert torch.equal(image[0], torch.from_numpy(arrays["train"][0][3]))
    assert train.classes[0] == "T-shirt/top" and len(train.classes) == 10
    assert torch.equal(test.labels, torch.arange(4))


def test_fashion_mnist_torchvision_raw_layout_uncompressed_and_resized(tmp_path):
    _write_fashion(tmp_path / "FashionMNIST" / "raw", compress=False)
    data = ds.FashionMNISTDataset(root=str(tmp_path), image_size=32)
    assert len(data) == 6 and data.image_size == (32, 32)
    _check_sample(data)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[: len(b) // 2], "gzip"),  # truncated gzip stream
        (lambda b: gzip.compress(gzip.decompress(b)[:-10]), "truncated"),  # truncated IDX payload
        (lambda b: gzip.compress(b"\x00\x00\x08\x01" + gzip.decompress(b)[4:]), "magic number"),
        (lambda b: gzip.compress(gzip.decompress(b) + b"xx"), "longer than its header"),
        (lambda b: gzip.compress(b"\x00\x00"), "magic number"),
    ],
)
def test_fashion_mnist_damaged_files_raise_data_error(tmp_path, damage, message):
    _write_fashion(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=message) as info:
        ds.FashionMNISTDataset(root=str(tmp_path))
    assert str(path) in str(info.value)


def test_fashion_mnist_label_count_mismatch(tmp_path):
    _write_fashion(tmp_path)
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(_idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DataError, match="6 images but"):
        ds.FashionMNISTDataset(root=str(tmp_path))


def test_fashion_mnist_missing_data_names_path_and_fix(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        ds.FashionMNISTDataset(root=str(missing))
    text = str(info.value)
    assert str(missing) in text and "does not exist" in text
    assert "apt-get install -y dataset-fashion-mnist" in text and "download: true" in text
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no train-images-idx3-ubyte.gz"):
        ds.FashionMNISTDataset(root=str(tmp_path / "empty"))


def test_fashion_mnist_download_goes_through_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    def fake_download(root, train=True, download=False):
        calls.append((root, train, download))
        _write_fashion(os.path.join(root, "FashionMNIST", "raw"))

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", fake_download)
    data = ds.FashionMNISTDataset(root=str(tmp_path), download=True, train=False)
    assert len(data) == 4 and calls == [(str(tmp_path), False, True)]
    # files now present: no second download
    ds.FashionMNISTDataset(root=str(tmp_path), download=True)
    assert len(calls) == 1

    def failing(root, train=True, download=False):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", failing)
    with pytest.raises(DataError, match="downloading into .* failed"):
        ds.FashionMNISTDataset(root=str(tmp_path / "other"), download=True)


@pytest.mark.skipif(not os.path.isdir(FASHION_ROOT), reason=f"{FASHION_ROOT} not installed")
def test_fashion_mnist_real_data():
    train = ds.FashionMNISTDataset()
    test = ds.FashionMNISTDataset(train=False)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), 1000))


# -- cifar ----------------------------------------------------------------------------------------
@pytest.fixture
def no_md5(monkeypatch):
    """torchvision checks md5s through the module-level check_integrity (also for the meta file)."""
    import torchvision.datasets.cifar
    import torchvision.datasets.stl10

    def exists(fpath, md5=None):
        return os.path.isfile(fpath)

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", exists)
    monkeypatch.setattr(torchvision.datasets.stl10, "check_integrity", exists)


def _pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _write_cifar10(root, per_batch=3):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        rows[name] = data
        _pickle(folder / name, {"data": data, "labels": [i % 10 for i in range(per_batch)]})
    _pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    return rows


def test_cifar10_from_fake_batches(tmp_path, no_md5):
    rows = _write_cifar10(tmp_path)
    train = ds.CIFAR10Dataset(root=str(tmp_path))
    test = ds.CIFAR10Dataset(root=str(tmp_path), train=False)
    assert (len(train), len(test)) == (15, 3)
    image, label = _check_sample(train, 4)
    assert image.shape == (3, 32, 32) and label == 1
    # a CIFAR row is the R plane, then G, then B, each row-major
    assert torch.equal(image, torch.from_numpy(rows["data_batch_2"][1].reshape(3, 32, 32)))
    assert train.classes == [f"c{i}" for i in range(10)] and train.has_labels


def test_cifar100_from_fake_files(tmp_path, no_md5):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = np.arange(4 * 3072).astype(np.uint8).reshape(4, 3072)
    for name in ("train", "test"):
        _pickle(folder / name, {"data": data, "fine_labels": [0, 99, 5, 7], "coarse_labels": [0, 1, 2, 3]})
    _pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)]})
    data100 = ds.CIFAR100Dataset(root=str(tmp_path), train=False)
    assert len(data100) == 4 and len(data100.classes) == 100
    image, label = _check_sample(data100, 1)
    assert label == 99 and image.shape == (3, 32, 32)


def test_cifar_missing_or_corrupt_suggests_download(tmp_path):
    with pytest.raises(DataError) as info:
        ds.CIFAR10Dataset(root=str(tmp_path))
    text = str(info.value)
    assert "cifar-10-batches-py does not exist" in text and "download: true" in text
    _write_cifar10(tmp_path)  # real md5 check: our fake files do not match
    with pytest.raises(DataError, match="checksums"):
        ds.CIFAR10Dataset(root=str(tmp_path))
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError, match="lacks test_batch"):
        ds.CIFAR10Dataset(root=str(tmp_path))


# -- stl10 ----------------------------------------------------------------------------------------
def _write_stl10(root, n_train=3, n_test=2, n_unlabeled=4, class_names=True):
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = {}
    for name, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        chw = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        images[name] = chw
        chw.transpose(0, 1, 3, 2).tofile(folder / f"{name}_X.bin")  # STL-10 stores columns first
        if name != "unlabeled":
            (np.arange(n, dtype=np.uint8) % 10 + 1).tofile(folder / f"{name}_y.bin")  # 1-based
    if class_names:
        (folder / "class_names.txt").write_text("\n".join(ds.STL10_CLASSES) + "\n")
    return images


def test_stl10_splits_labels_and_orientation(tmp_path, no_md5):
    images = _write_stl10(tmp_path)
    unlabeled = ds.STL10Dataset(root=str(tmp_path))
    assert len(unlabeled) == 4 and not unlabeled.has_labels and unlabeled.classes is None
    image, label = _check_sample(unlabeled, 2)
    assert label == -1 and torch.equal(image, torch.from_numpy(images["unlabeled"][2]))
    train = ds.STL10Dataset(root=str(tmp_path), split="train")
    assert train.labels.tolist() == [0, 1, 2] and train.classes == ds.STL10_CLASSES
    test = ds.STL10Dataset(root=str(tmp_path), split="test")
    assert test.labels.tolist() == [0, 1]
    both = ds.STL10Dataset(root=str(tmp_path), split="train+unlabeled", image_size=32)
    assert both.labels.tolist() == [0, 1, 2, -1, -1, -1, -1] and both.has_labels
    assert _check_sample(both, 5)[0].shape == (3, 32, 32)


def test_stl10_without_class_names_file(tmp_path, no_md5):
    _write_stl10(tmp_path, class_names=False)
    assert ds.STL10Dataset(root=str(tmp_path), split="test").classes == ds.STL10_CLASSES


def test_stl10_missing_data(tmp_path):
    with pytest.raises(DataError, match="stl10_binary does not exist.*download: true"):
        ds.STL10Dataset(root=str(tmp_path))
    with pytest.raises(InvalidArgumentsError):
        ds.STL10Dataset(root=str(tmp_path), split="validation")


# -- image_folder ---------------------------------------------------------------------------------
def _rgb(w, h, color=(200, 30, 60)):
    return Image.new("RGB", (w, h), color)


def _write_mixed_images(folder):
    """One image per awkward mode/format, of assorted sizes; returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    _rgb(50, 30).convert("L").save(folder / "grey.png")
    rgba = Image.new("RGBA", (20, 40), (10, 200, 10, 0))
    rgba.save(folder / "alpha.png")
    _rgb(33, 33).convert("P").save(folder / "palette.gif")
    p = _rgb(16, 24).convert("P")
    p.info["transparency"] = 0
    p.save(folder / "palette_transparent.png", transparency=0)
    _rgb(64, 48).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.full((30, 45), 32768, dtype=np.uint16)).save(folder / "sixteen.png")
    _rgb(500, 300).save(folder / "big.JPEG")  # upper-case extension, decoded via draft
    _rgb(12, 9).save(folder / "small.bmp")
    _rgb(40, 40).save(folder / "photo.webp")
    _rgb(25, 35).save(folder / "scan.tif")
    (folder / "notes.txt").write_text("not an image")
    return sorted(p.name for p in folder.iterdir() if p.suffix != ".txt")


def test_image_folder_unlabeled_any_mode_fixed_shape(tmp_path):
    names = _write_mixed_images(tmp_path / "flat")
    (tmp_path / "flat" / "deeper").mkdir()
    _rgb(10, 10).save(tmp_path / "flat" / "deeper" / "nested.png")
    data = ds.ImageFolderDataset(root=str(tmp_path / "flat"), image_size=24)
    assert not data.has_labels and data.classes is None
    assert len(data) == len(names) + 1 and all(isinstance(p, str) for p in data.paths)
    assert data.paths == sorted(data.paths)
    for i in range(len(data)):
        image, label = _check_sample(data, i)
        assert image.shape == (3, 24, 24) and label == -1
    shallow = ds.ImageFolderDataset(root=str(tmp_path / "flat"), recursive=False)
    assert len(shallow) == len(names)
    grey = ds.ImageFolderDataset(root=str(tmp_path / "flat"), image_size=16, channels=1)
    for i in range(len(grey)):
        assert _check_sample(grey, i)[0].shape == (1, 16, 16)


def test_image_folder_sixteen_bit_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(tmp_path / "half.png")
    with Image.open(tmp_path / "half.png") as opened:
        assert opened.mode.startswith("I")
    image, _ = ds.ImageFolderDataset(root=str(tmp_path), image_size=8)[0]
    assert int(image.min()) == int(image.max()) == 128


def test_image_folder_resizes_shorter_side_then_centre_crops(tmp_path):
    # 90x30: red | green | blue thirds; the centre square is green (edges blend, as resize-then-crop does)
    array = np.zeros((30, 90, 3), np.uint8)
    array[:, :30, 0] = array[:, 30:60, 1] = array[:, 60:, 2] = 255
    Image.fromarray(array).save(tmp_path / "bands.png")
    image, _ = ds.ImageFolderDataset(root=str(tmp_path), image_size=10, crop="center")[0]
    assert image.shape == (3, 10, 10)
    inner = image[:, :, 1:-1]
    assert (inner[1] >= 250).all() and (inner[0] <= 5).all() and (inner[2] <= 5).all()
    assert image[1, :, 0].max() < 250  # the red band bleeds into the edge column only


def test_image_folder_applies_exif_orientation(tmp_path):
    array = np.zeros((20, 40, 3), np.uint8)
    array[:10, :, 0] = 255  # top half red
    array[10:, :, 2] = 255  # bottom half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display: top goes right
    Image.fromarray(array).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image, _ = ds.ImageFolderDataset(root=str(tmp_path), image_size=20)[0]
    assert image[0, 10, 18] > 200 and image[2, 10, 1] > 200


def test_image_folder_labelled_from_sub_folders(tmp_path):
    root = tmp_path / "data"
    (root / "dog").mkdir(parents=True)
    _rgb(30, 20).save(root / "dog" / "a.png")
    _rgb(20, 30).save(root / "dog" / "b.jpg")
    (root / "cat" / "indoor").mkdir(parents=True)
    _rgb(8, 8).save(root / "cat" / "indoor" / "c.png")
    _rgb(8, 8).save(root / "cat" / "d.webp")
    (root / "empty").mkdir()
    (root / ".cache").mkdir()
    _rgb(8, 8).save(root / ".cache" / "x.png")
    _rgb(8, 8).save(root / "cat" / ".hidden.png")
    data = ds.ImageFolderDataset(root=str(root), image_size=16)
    assert data.classes == ["cat", "dog"] and data.has_labels
    assert data.labels.tolist() == [0, 0, 1, 1]
    relative = [os.path.relpath(p, root).replace(os.sep, "/") for p in data.paths]
    assert relative == ["cat/d.webp", "cat/indoor/c.png", "dog/a.png", "dog/b.jpg"]
    assert [_check_sample(data, i)[1] for i in range(4)] == [0, 0, 1, 1]
    shallow = ds.ImageFolderDataset(root=str(root), recursive=False)
    assert len(shallow) == 3 and shallow.labels.tolist() == [0, 1, 1]


def test_image_folder_missing_empty_and_unreadable(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ds.ImageFolderDataset(root=str(tmp_path / "missing"))
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="holds no images") as info:
        ds.ImageFolderDataset(root=str(tmp_path / "empty"))
    assert str(tmp_path / "empty") in str(info.value)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    data = ds.ImageFolderDataset(root=str(bad))
    with pytest.raises(DataError, match="broken.png"):
        data[0]
    with pytest.raises(InvalidArgumentsError):
        ds.ImageFolderDataset(root=str(bad), channels=4)


def test_image_folder_truncated_jpeg_raises_data_error(tmp_path):
    _rgb(64, 64).save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "whole.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="whole.jpg"):
        ds.ImageFolderDataset(root=str(tmp_path), image_size=32)[0]


# -- imagenet -------------------------------------------------------------------------------------
def test_imagenet_folder_layout(tmp_path):
    for split in ("train", "val"):
        for wnid in ("n01440764", "n01443537"):
            (tmp_path / split / wnid).mkdir(parents=True)
            _rgb(40, 30).save(tmp_path / split / wnid / f"{split}_{wnid}.JPEG")
    train = ds.ImageNetDataset(root=str(tmp_path), image_size=32)
    val = ds.ImageNetDataset(root=str(tmp_path), split="val", image_size=32)
    assert train.classes == val.classes == ["n01440764", "n01443537"]
    image, label = _check_sample(val, 1)
    assert image.shape == (3, 32, 32) and label == 1 and val.paths[1].endswith("val_n01443537.JPEG")


def test_imagenet_missing_split_and_unsorted_val(tmp_path):
    with pytest.raises(DataError, match="train does not exist.*<wnid>"):
        ds.ImageNetDataset(root=str(tmp_path))
    (tmp_path / "val").mkdir()
    _rgb(8, 8).save(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataError, match="instead of in wnid folders"):
        ds.ImageNetDataset(root=str(tmp_path), split="val")
