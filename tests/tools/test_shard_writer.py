"""``contrastive shard FOLDER OUT/``: the shards hold the folder's images as ``image_folder`` reads
them (bytes, labels, the hold-out of ``eval.holdout``), mixed across shards; ``--image-size``
re-encodes; a bad OUT or folder stops with one line."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest
from PIL import Image

from contrastive.cli import main
from contrastive.components.datasets import ImageFolderDataset, webdataset
from contrastive.errors import DataError
from contrastive.evaluation.holdout import split_indices
from tests.helpers import image_folder, shard_folder


def members(path):
    """``{key: {field: bytes}}`` of a tar shard."""
    found: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            key, field = member.name.split(".", 1)
            found.setdefault(key, {})[field] = tar.extractfile(member).read()
    return found


def samples_of(out, split):
    found = {}
    for name in sorted(os.listdir(out)):
        if name.startswith(split) and name.endswith(".tar"):
            found.update({f"{name}/{k}": v for k, v in members(out / name).items()})
    return found


def test_shards_hold_the_folder_bytes_labels_and_holdout(tmp_path):
    folder = image_folder(tmp_path / "folder", per_class=12)
    (folder / "a" / "empty.png").write_bytes(b"")  # dropped, as image_folder drops it
    summary = shard_folder(folder, tmp_path / "out", shard_size=10, holdout=0.25, seed=3)
    source = ImageFolderDataset(str(folder))
    kept, held = split_indices(source.labels, 0.25, 3, what="x", classes=source.classes)
    relative = [os.path.relpath(p, folder) for p in source.paths]
    for split, chosen in (("train", kept), ("test", held)):
        samples = samples_of(tmp_path / "out", split)
        by_path = {s["path.txt"].decode(): s for s in samples.values()}
        assert sorted(by_path) == sorted(relative[i] for i in chosen)  # image_folder's hold-out, with that seed
        for i in chosen:
            sample = by_path[relative[i]]
            image = sample.get("png", sample.get("jpg"))
            assert image == open(source.paths[i], "rb").read()  # stored unchanged
            assert int(sample["cls"]) == int(source.labels[i])
    first = members(tmp_path / "out" / "train-000000.tar")
    assert len({s["cls"] for s in first.values()}) == 3  # a seeded order: every shard mixes the classes
    index = json.loads((tmp_path / "out" / "shards.json").read_text())
    assert index["classes"] == ["a", "b", "c"] and [e["samples"] for e in index["splits"]["train"]] == [10, 10, 7]
    assert summary["splits"]["test"]["images"] == 9 and summary["skipped"] == 1
    assert summary["splits"]["train"]["urls"].endswith("train-{000000..000002}.tar")
    stream = webdataset(summary["splits"]["train"]["urls"], image_size=8)
    assert len(stream) == 27 and stream.classes == ["a", "b", "c"]


def test_image_size_reencodes_smaller_keeps_the_aspect_and_skips_bad_files(tmp_path, capsys):
    folder = tmp_path / "flat"
    folder.mkdir()
    Image.new("RGB", (90, 40), (200, 30, 30)).save(folder / "wide.png")
    Image.new("L", (10, 12), 80).save(folder / "small.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    summary = shard_folder(folder, tmp_path / "out", image_size=20)
    assert summary["skipped"] == 1 and "broken.jpg" in capsys.readouterr().out
    samples = {s["path.txt"].decode(): s for s in samples_of(tmp_path / "out", "train").values()}
    assert sorted(samples) == ["small.png", "wide.png"] and "cls" not in samples["wide.png"]  # no labels
    wide = Image.open(io.BytesIO(samples["wide.png"]["jpg"]))
    assert wide.format == "JPEG" and wide.size == (45, 20)  # shorter side 40 -> 20, aspect kept
    small = Image.open(io.BytesIO(samples["small.png"]["jpg"]))
    assert small.size == (10, 12) and small.mode == "L"  # never enlarged; greyscale stays grey
    assert not webdataset(str(tmp_path / "out" / "train-000000.tar"), image_size=8).has_labels


def test_out_must_be_new_or_empty_and_bad_input_is_one_line(tmp_path, capsys):
    folder = image_folder(tmp_path / "folder", per_class=2)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    with pytest.raises(DataError, match="not an empty folder"):
        shard_folder(folder, tmp_path / "full")
    assert main(["shard", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["shard", str(folder), str(tmp_path / "out"), "--shard-size", "0"]) == 2
    assert "--shard-size must be a positive" in capsys.readouterr().err


def test_the_command_prints_the_shards_and_the_training_command(tmp_path, capsys):
    folder = image_folder(tmp_path / "folder", per_class=4)
    assert main(["shard", str(folder), str(tmp_path / "out"), "--shard-size", "5", "--holdout", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "wrote 2 train shard(s), 9 images" in out and "wrote 1 test shard(s), 3 images" in out
    assert f"--data.name webdataset --data.args.urls '{tmp_path / 'out'}/train-{{000000..000001}}.tar'" in out
