"""``image_folder`` on what people's folders hold: every format in every mode, EXIF orientation,
symbolic links (followed once, loops cut), the ``labels`` switch and subsets."""

import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive.components.datasets import ImageFolderDataset
from contrastive.errors import DataError

RED, BLUE = (220, 20, 20), (20, 20, 220)
FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP", "tif": "TIFF"}


def two_halves(w=24, h=12):
    """Top half red, bottom half blue."""
    array = np.zeros((h, w, 3), np.uint8)
    array[: h // 2] = RED
    array[h // 2 :] = BLUE
    return Image.fromarray(array)


def png_48bit(path, rgb16):
    """A 16-bit-per-channel RGB PNG (PIL writes none), from a (H, W, 3) uint16 array."""
    h, w, _ = rgb16.shape
    rows = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def modes_of(fmt):
    """The modes each format stores (what PIL can write for it)."""
    modes = ["RGB", "L"]
    if fmt in ("png", "webp", "tif"):
        modes.append("RGBA")
    if fmt in ("jpg", "tif"):
        modes.append("CMYK")
    if fmt in ("png", "tif"):
        modes.append("I;16")
    return modes


def test_every_format_and_mode_decodes_to_the_same_colours(tmp_path):
    picture = two_halves()
    for fmt, pil in FORMATS.items():
        for mode in modes_of(fmt):
            if mode == "I;16":  # 16-bit grey: the luminance scaled to 0..65535
                grey = np.asarray(picture.convert("L"), dtype=np.uint16) * 257
                image = Image.fromarray(grey)
            else:
                image = picture.convert(mode)
            image.save(tmp_path / f"{mode.replace(';', '')}.{fmt}", pil, **({"quality": 95} if fmt == "jpg" else {}))
    png_48bit(tmp_path / "rgb48.png", np.asarray(picture, dtype=np.uint16) * 257)
    data = ImageFolderDataset(str(tmp_path), image_size=8, strict=True)
    assert len(data) == sum(len(modes_of(f)) for f in FORMATS) + 1 and not data.has_labels
    for i, path in enumerate(data.paths):
        image, label = data[i]
        assert image.shape == (3, 8, 8) and image.dtype == torch.uint8 and label == -1, path
        top, bottom = image[:, 1, 4].int(), image[:, 6, 4].int()
        colour = "RGBA" in path or "RGB." in path or "CMYK" in path or "rgb48" in path
        if colour:
            assert top[0] > 150 and top[2] < 90 and bottom[2] > 150 and bottom[0] < 90, path
        else:  # grey: red and blue of these halves have different luminance, the same in R, G, B
            assert abs(int(top[0]) - int(top[2])) < 8 and abs(int(top[0]) - int(bottom[0])) > 10, path


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp", "tif"])
def test_exif_orientation_is_applied_in_every_format_that_has_it(tmp_path, fmt):
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: the red top ends up on the right
    two_halves(24, 12).save(tmp_path / f"turned.{fmt}", FORMATS[fmt], exif=exif)
    data = ImageFolderDataset(str(tmp_path), image_size=12, strict=True)
    image, aspect = data.load_item(0)[0], data.load_item(0)[2]
    assert aspect == pytest.approx(12 / 24)  # the displayed width / height
    assert image[0, 6, 10] > 150 and image[2, 6, 1] > 150


def test_symlinked_folders_are_followed_once_and_loops_cut(tmp_path):
    root, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    two_halves().save(root / "a.png")
    two_halves().save(elsewhere / "b.png")
    os.symlink(elsewhere, root / "linked")  # a linked folder outside the tree: followed
    os.symlink(elsewhere, root / "again")  # the same folder under a second name: read once
    os.symlink(root, elsewhere / "loop")  # back up the tree: not followed again
    data = ImageFolderDataset(str(root), image_size=8)
    names = [os.path.relpath(p, root) for p in data.paths]
    assert names == ["a.png", os.path.join("again", "b.png")]
    assert len({os.path.realpath(p) for p in data.paths}) == len(data.paths)


def test_labels_switch(tmp_path):
    for year in ("2023", "2024"):
        (tmp_path / year).mkdir()
        two_halves().save(tmp_path / year / "x.png")
    by_layout = ImageFolderDataset(str(tmp_path), image_size=8)
    assert by_layout.classes == ["2023", "2024"] and by_layout.labels.tolist() == [0, 1]
    unlabelled = ImageFolderDataset(str(tmp_path), image_size=8, labels=False)
    assert not unlabelled.has_labels and unlabelled.labels.tolist() == [-1, -1] and len(unlabelled) == 2
    assert unlabelled.labels_hint == "data.args.labels is false"
    two_halves().save(tmp_path / "loose.png")
    with pytest.raises(DataError, match="not in class sub-folders, and data.args.labels is true"):
        ImageFolderDataset(str(tmp_path), image_size=8, labels=True)
    assert ImageFolderDataset(str(tmp_path), image_size=8).labels_hint == "its images are not in class sub-folders"


def test_subset_replaces_a_bad_file_from_inside_the_subset(tmp_path, capsys):
    for name in ("a", "c", "d"):
        two_halves().save(tmp_path / f"{name}.png")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    data = ImageFolderDataset(str(tmp_path), image_size=8)
    part = data.subset([1, 3])  # b (broken) and d
    assert [os.path.basename(p) for p in part.paths] == ["b.png", "d.png"] and part.labels.tolist() == [-1, -1]
    assert torch.equal(part[0][0], part[1][0])  # b's place taken by d, not by c from outside the subset
    assert part.skipped_files["count"] == 1 and data.skipped_files["count"] == 0
    assert "b.png" in capsys.readouterr().err
