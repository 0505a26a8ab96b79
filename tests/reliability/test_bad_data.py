"""Generated bad image folders: bad files are skipped and counted (or fatal with strict),
odd image modes are converted, empty folders stop before training, a dying loader worker is
reported with the file it was reading; the documented folder command (``contrastive check`` /
``fit --recipe simclr_folder``) on bad folders and bad evaluation set-ups exits 2 with one line."""

from __future__ import annotations

import os
import re
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive.components import datasets as ds
from contrastive.errors import DataError
from contrastive.training.data import guard_loader


def good_and_bad_folder(root):
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), (200, 10, 10)).save(root / "a_rgb.png")
    Image.new("RGBA", (20, 30), (0, 200, 0, 0)).save(root / "b_rgba.png")
    Image.new("RGB", (20, 20), (1, 2, 3)).convert("CMYK").save(root / "c_cmyk.jpg")
    Image.new("RGB", (24, 20), (9, 9, 9)).convert("P").save(root / "d_palette.gif")
    Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16)).save(root / "e_16bit.png")
    Image.new("L", (20, 20), 77).save(root / "f_grey.png")
    (root / "g_empty.jpg").write_bytes(b"")
    whole = root / "h_truncated.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(whole)
    whole.write_bytes(whole.read_bytes()[:300])
    (root / "i_garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "j_text.jpg").write_text("this is not an image")
    return root


def test_bad_files_are_skipped_counted_and_named(tmp_path, capsys):
    data = ds.ImageFolderDataset(root=str(good_and_bad_folder(tmp_path / "mixed")), image_size=8)
    assert len(data) == 9  # the zero-byte file is dropped at the scan
    assert "g_empty.jpg" in capsys.readouterr().err
    seen = [data[i] for i in range(len(data))]
    assert all(img.shape == (3, 8, 8) and img.dtype == torch.uint8 for img, _ in seen)
    # a bad file is replaced by the next readable one: indices 6, 7, 8 (h, i, j) -> wrap to a_rgb
    assert torch.equal(seen[6][0], seen[0][0]) and torch.equal(seen[8][0], seen[0][0])
    report = data.skipped_files
    assert report["count"] == 4
    assert [os.path.basename(p) for p in report["first"]] == ["g_empty.jpg", "h_truncated.jpg", "i_garbage.png", "j_text.jpg"]
    err = capsys.readouterr().err
    assert "h_truncated.jpg" in err and "i_garbage.png" in err
    # converted, not skipped: CMYK, palette, 16-bit, RGBA, grey all decode
    assert int(seen[4][0].min()) == 255  # 16-bit white stays white


def test_strict_makes_bad_files_fatal(tmp_path):
    root = good_and_bad_folder(tmp_path / "mixed")
    with pytest.raises(DataError, match=r"g_empty\.jpg.*strict false"):
        ds.ImageFolderDataset(root=str(root), image_size=8, strict=True)
    (root / "g_empty.jpg").unlink()
    data = ds.ImageFolderDataset(root=str(root), image_size=8, strict=True)
    with pytest.raises(DataError, match=r"h_truncated\.jpg.*strict"):
        data[6]


def test_only_bad_files_and_empty_folders_stop_with_the_folder_named(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"no file in .*bad could be decoded"):
        ds.ImageFolderDataset(root=str(bad))[0]
    (tmp_path / "zero").mkdir()
    (tmp_path / "zero" / "z.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"every image file in .*zero is empty"):
        ds.ImageFolderDataset(root=str(tmp_path / "zero"))
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match=r"none holds no images"):
        ds.ImageFolderDataset(root=str(tmp_path / "none"))


def test_skips_in_loader_workers_are_counted_in_the_main_process(tmp_path):
    data = ds.ImageFolderDataset(root=str(good_and_bad_folder(tmp_path / "mixed")), image_size=8)
    loader = torch.utils.data.DataLoader(data, batch_size=3, num_workers=2)
    images = torch.cat([batch for batch, _ in guard_loader(loader, data)])
    assert images.shape == (9, 3, 8, 8)
    assert data.skipped_files["count"] == 4


def test_strict_error_in_a_worker_is_one_line(tmp_path):
    root = good_and_bad_folder(tmp_path / "mixed")
    (root / "g_empty.jpg").unlink()
    data = ds.ImageFolderDataset(root=str(root), image_size=8, strict=True)
    loader = torch.utils.data.DataLoader(data, batch_size=3, num_workers=1)
    with pytest.raises(DataError) as info:
        list(guard_loader(loader, data))
    message = str(info.value)
    assert "\n" not in message and "h_truncated.jpg" in message and "Traceback" not in message


class CrashingFolder(ds.ImageFolderDataset):
    """Simulates a decoder that kills its process (a segfault in a C library) on one file."""

    def decode(self, path):
        if path.endswith("c_crash.png"):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().decode(path)


def test_worker_crash_names_the_file(tmp_path):
    root = tmp_path / "crash"
    root.mkdir()
    for name in ("a.png", "b.png", "c_crash.png", "d.png"):
        Image.new("RGB", (8, 8)).save(root / name)
    data = CrashingFolder(root=str(root), image_size=8)
    loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=1)
    with pytest.raises(DataError, match=r"worker died while reading .*c_crash\.png"):
        list(guard_loader(loader, data))


# -- the documented folder command on bad folders: exit 2, one line, no traceback -------------------
def folder_command(verb, root, out, *extra):
    return [verb, "--recipe", "simclr_folder", "--data.args.root", str(root), "--data.args.image_size", "16",
            "--augmentation.0.args.size", "16", "--backbone.name", "test_resnet", "--trainer.batch_size", "4",
            "--trainer.max_steps", "1", "--trainer.progress", "false", "--trainer.output_dir", str(out), *extra]


def class_folder(root, per_class, classes=("a", "b", "c")):
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (12, 12), (40 * i, 90, 200)).save(root / name / f"{i}.png")
    return root  # a Path: truthy


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def unlabelled_folder(root, n=10):
    root.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (12, 12), (20 * i, 90, 200)).save(root / f"{i}.png")
    return root


@pytest.mark.parametrize(
    "verb, make, extra, message",
    [
        ("check", lambda root: root.mkdir() or root, [], "holds no images anywhere below it"),
        ("fit", lambda root: root.mkdir() or root, [], "holds no images anywhere below it"),
        ("check", lambda root: (root / "sub").mkdir(parents=True) or (root / "sub" / "z.jpg").write_bytes(b"") or root,
         [], "every image file in .* is empty"),
        ("check", lambda root: class_folder(root, 3), [], r"too few for each of its 3 classes.*--eval\.holdout 0\.25"),
        ("fit", lambda root: class_folder(root, 3), [], r"too few for each of its 3 classes"),
        ("check", lambda root: class_folder(root, 1, ("a", "b")), ["--eval.holdout", "0.5"],
         "classes 'a', 'b' of image_folder .* have only 1 image each"),
        ("check", lambda root: unlabelled_folder(root, 2), ["--eval.holdout", "0.9"], "leaves no images on one side"),
        ("check", lambda root: unlabelled_folder(root, 10), ["--eval.protocols", "[knn, linear]"],
         "asks for knn and linear, which need labels, but image_folder .* has no labels"),
        ("fit", lambda root: unlabelled_folder(root, 10), ["--eval.protocols", "[linear]"], "asks for linear, which need labels"),
        ("check", lambda root: unlabelled_folder(root, 10), ["--data.args.labels", "true"], "not in class sub-folders"),
        ("check", lambda root: unlabelled_folder(root, 10),
         ["--eval.test_data.name", "image_folder", "--eval.test_data.args.root", "/nonexistent/folder"],
         r"eval\.test_data: image_folder: /nonexistent/folder does not exist"),
    ],
)
def test_bad_folders_stop_with_one_line(tmp_path, capsys, verb, make, extra, message):
    from contrastive.cli import main

    root = make(tmp_path / "data")
    assert main(folder_command(verb, root, tmp_path / "run", *extra)) == 2
    line = one_error_line(capsys)
    assert re.search(message, line), line
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before training


def test_folder_of_only_corrupt_files_stops_fit_with_one_line(tmp_path, capsys):
    from contrastive.cli import main

    (tmp_path / "data").mkdir()
    for i in range(20):
        (tmp_path / "data" / f"{i}.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    assert main(folder_command("fit", tmp_path / "data", tmp_path / "run")) == 2
    assert re.search(r"no file in .*data could be decoded \(18 tried", one_error_line(capsys))


# -- webdataset shards: bad shards and samples skipped and counted, bad set-ups one line -------------
def png_bytes(i: int) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), (20 * i % 255, 90, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_tar(path, samples):
    """A shard of ``samples`` (dicts of webdataset fields, ``__key__`` included)."""
    import webdataset as wds

    with wds.TarWriter(str(path)) as writer:
        for sample in samples:
            writer.write(sample)
    return path


def good_shard(path, start, n=6):
    return write_tar(path, [{"__key__": f"{start + i:06d}", "png": png_bytes(start + i), "cls": b"0"} for i in range(n)])


def shard_command(verb, urls, out, *extra):
    return [verb, "--recipe", "simclr_folder", "--data.name", "webdataset", "--data.args.urls", str(urls),
            "--data.args.image_size", "16", "--augmentation.0.args.size", "16", "--backbone.name", "test_resnet",
            "--trainer.batch_size", "4", "--trainer.max_steps", "1", "--trainer.progress", "false",
            "--trainer.num_workers", "0", "--trainer.output_dir", str(out), *extra]


def test_corrupt_image_in_a_shard_is_skipped_counted_and_named(tmp_path, capsys):
    good_shard(tmp_path / "s-0.tar", 0)
    write_tar(tmp_path / "s-1.tar", [{"__key__": "000100", "png": png_bytes(1)},
                                     {"__key__": "000101", "jpg": b"\xff\xd8\xff not a jpeg"},
                                     {"__key__": "000102", "png": png_bytes(2)}])
    data = ds.webdataset(str(tmp_path / "s-{0..1}.tar"), image_size=8)
    assert len(data) == 9  # sizes counted from the tar headers: every sample with an image field
    items = list(data)
    assert len(items) == 9 and all(img.shape == (3, 8, 8) for img, *_ in items)  # the next sample takes its place
    report = data.skipped_files
    assert report["count"] == 1 and "000101" in report["first"][0] and "s-1.tar" in report["first"][0]
    assert "skipping" in capsys.readouterr().err
    list(data)  # a second epoch: the known-bad sample is not decoded (or counted) again
    assert data.skipped_files["count"] == 1
    strict = ds.webdataset(str(tmp_path / "s-{0..1}.tar"), image_size=8, strict=True)
    loader = torch.utils.data.DataLoader(strict, batch_size=3, num_workers=1)
    with pytest.raises(DataError) as info:
        list(guard_loader(loader, strict))
    assert "\n" not in str(info.value) and "000101" in str(info.value) and "strict" in str(info.value)


def test_empty_and_truncated_shards_are_skipped_and_counted(tmp_path, capsys):
    good_shard(tmp_path / "s-0.tar", 0)
    (tmp_path / "s-1.tar").write_bytes(b"")
    whole = good_shard(tmp_path / "s-2.tar", 10).read_bytes()
    (tmp_path / "s-2.tar").write_bytes(whole[: len(whole) // 2])  # cut in the middle of a member
    data = ds.webdataset(str(tmp_path / "s-{0..2}.tar"), image_size=8)
    err = capsys.readouterr().err
    assert "s-1.tar: an empty (zero-byte) file" in err and "s-2.tar: not a readable tar file" in err
    assert data.skipped_files["count"] == 2
    assert 6 < len(data) < 12  # the truncated shard's samples before the cut still count
    ids = [int(i[2]) for i in data]
    assert len(ids) == len(data)
    with pytest.raises(DataError, match=r"s-1\.tar is an empty \(zero-byte\) file.*strict"):
        ds.webdataset(str(tmp_path / "s-{0..2}.tar"), image_size=8, strict=True)
    (tmp_path / "e-0.tar").write_bytes(b"")
    write_tar(tmp_path / "e-1.tar", [{"__key__": "x", "txt": "no image here"}])
    with pytest.raises(DataError, match="hold no image samples"):
        ds.webdataset(str(tmp_path / "e-{0..1}.tar"), image_size=8)


@pytest.mark.parametrize(
    "verb, urls, extra, message",
    [
        ("check", "nowhere/train-{0000..0009}.tar", [], r"none of the 10 shard\(s\) of .* exist"),
        ("fit", "nowhere/train-{0000..0009}.tar", [], r"none of the 10 shard\(s\) of .* exist"),
        ("check", "DATA/s-{0..3}.tar", [], r"2 of the 4 shard\(s\) of .* exist .*s-2\.tar"),
        ("check", "pipe:cat DATA/s-0.tar", ["--data.args.samples_per_epoch", "12"],
         r"is a pipe: URL, which runs a shell command.*--allow-pipe.*CONTRASTIVE_ALLOW_PIPE=1"),
        ("fit", "pipe:cat DATA/s-0.tar", ["--data.args.samples_per_epoch", "12"], r"is a pipe: URL"),
        ("check", "DATA/s-{0..1}.tar", ["--data.args.test_urls", "pipe:cat DATA/s-0.tar"], r"test_urls: .* pipe: URL"),
        ("check", "DATA/s-{0..1}.tar", ["--data.args.allow_pipe", "true"], r"no argument 'allow_pipe'"),
        ("check", "DATA/s-{0..1}.tar", ["--eval.protocols", "[knn]"], r"asks for knn, but .* streams and has no test data"),
        ("check", "DATA/s-{0..1}.tar", ["--data.args.test_urls", "DATA/t-0.tar"], r"test_urls: none of the 1 shard"),
        ("check", "DATA/s-0.tar", ["--trainer.batch_size", "8"], None),  # fit would need 8 per step: check passes
        ("fit", "DATA/s-0.tar", ["--trainer.batch_size", "8"], r"dataset has 6 images, fewer than one global batch"),
    ],
)
def test_bad_shard_setups_stop_with_one_line(tmp_path, capsys, monkeypatch, verb, urls, extra, message):
    from contrastive.cli import main
    from contrastive.recipe.trust import ALLOW_PIPE_ENV

    monkeypatch.delenv(ALLOW_PIPE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    good_shard(tmp_path / "s-0.tar", 0)
    good_shard(tmp_path / "s-1.tar", 10)
    extra = [e.replace("DATA", str(tmp_path)) for e in extra]
    code = main(shard_command(verb, urls.replace("DATA", str(tmp_path)), tmp_path / "run", *extra))
    if message is None:
        assert code == 0, capsys.readouterr().err
        return
    assert code == 2
    line = one_error_line(capsys)
    assert re.search(message, line), line
    assert not (tmp_path / "run" / "checkpoints").exists()
