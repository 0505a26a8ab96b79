"""``contrastive embed --format shards``: streamed shards equal the ``.npz``, resume, 2 processes = 1."""

from __future__ import annotations

import json

import numpy as np
import pytest

from contrastive.cli import main
from contrastive.evaluation import embedding_shards
from contrastive.evaluation.embedding_shards import ShardLayout, read_embeddings
from tests.helpers import run_ranks


def test_layout_covers_every_row_once_in_whole_batches():
    layout = ShardLayout.for_batches(count=1000, shard_rows=100, batch_size=32)
    assert layout.rows == 128 and layout.shards == 8
    assert [p for k in range(layout.shards) for p in layout.positions(k)] == list(range(1000))
    for world in (1, 2, 3, 4):
        owned = [k for rank in range(world) for k in layout.owned_by(rank, world)]
        assert sorted(owned) == list(range(8))


def test_shards_hold_what_the_npz_holds_and_one_shard_at_a_time(tiny_run, tmp_path, monkeypatch):
    npz, folder = tmp_path / "test.npz", tmp_path / "shards"
    assert main(["embed", str(tiny_run), "--out", str(npz), "--batch-size", "32"]) == 0
    extracted = []
    real = embedding_shards.extract_features
    monkeypatch.setattr(embedding_shards, "extract_features",
                        lambda *a, **k: extracted.append(len(k["indices"])) or real(*a, **k))
    assert main(["embed", str(tiny_run), "--out", str(folder), "--format", "shards", "--batch-size", "32", "--shard-rows", "50"]) == 0
    assert extracted == [64, 64, 52]  # 50 rounded up to two batches of 32: memory of one shard, not of N
    whole, sharded = np.load(npz), read_embeddings(folder)
    assert np.array_equal(whole["embeddings"], sharded["embeddings"])
    assert np.array_equal(whole["labels"], sharded["labels"])
    assert list(sharded["index"]) == list(range(180))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["rows"] == 180 and manifest["left_out"] == 0 and len(manifest["shards"]) == 3
    assert manifest["num_features"] == whole["embeddings"].shape[1]
    first = np.load(folder / "shard-00000.npy", mmap_mode="r")
    assert first.shape == (64, manifest["num_features"]) and first.dtype == np.float32


def test_a_killed_export_resumes_with_only_the_missing_shards(tiny_run, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "shards"
    args = ["embed", str(tiny_run), "--out", str(folder), "--format", "shards", "--batch-size", "32", "--shard-rows", "64"]
    assert main(args) == 0
    complete = read_embeddings(folder)
    # as a SIGKILL during shard 1 leaves it: its features renamed into place, its table not, no manifest
    (folder / "shard-00001.csv").unlink()
    (folder / "shard-00002.csv").unlink()
    (folder / "shard-00002.npy").unlink()
    (folder / "manifest.json").unlink()
    (folder / ".shard-00002.npy.tmp-123").write_bytes(b"partial")
    with pytest.raises(Exception, match="no manifest.json"):
        read_embeddings(folder)
    extracted = []
    real = embedding_shards.extract_features
    monkeypatch.setattr(embedding_shards, "extract_features",
                        lambda *a, **k: extracted.append(k["indices"][0]) or real(*a, **k))
    capsys.readouterr()
    assert main(args) == 0
    assert extracted == [64, 128]  # shard 0 was whole: not extracted again
    assert "1 of them already written before" in capsys.readouterr().out
    again = read_embeddings(folder)
    assert np.array_equal(again["embeddings"], complete["embeddings"])
    assert np.array_equal(again["labels"], complete["labels"])


def test_an_export_of_other_settings_is_not_overwritten(tiny_run, tmp_path, capsys):
    folder = tmp_path / "shards"
    assert main(["embed", str(tiny_run), "--out", str(folder), "--format", "shards", "--batch-size", "32", "--shard-rows", "64"]) == 0
    capsys.readouterr()
    assert main(["embed", str(tiny_run), "--out", str(folder), "--format", "shards", "--batch-size", "32", "--split", "train"]) == 2
    err = capsys.readouterr().err
    assert "holds an export of other settings (differing: data, rows_in_data, shard_rows, shards, split)" in err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["embed", str(tiny_run), "--out", str(tmp_path / "busy"), "--format", "shards", "--batch-size", "32"]) == 2
    assert "is a folder with other files in it" in capsys.readouterr().err


def test_two_processes_write_the_shards_one_process_writes(tiny_run, tmp_path):
    folders = {world: tmp_path / f"shards{world}" for world in (1, 2)}
    for world, folder in folders.items():
        code, output = run_ranks(["embed", str(tiny_run), "--out", str(folder), "--format", "shards", "--batch-size", "32",
                                  "--shard-rows", "64"], world=world)
        assert code == 0, output[-3000:]
        assert output.count("wrote") == 1 and "3 shards" in output
    one, two = read_embeddings(folders[1]), read_embeddings(folders[2])
    assert np.array_equal(one["embeddings"], two["embeddings"]) and np.array_equal(one["labels"], two["labels"])
    for k in range(3):  # each shard file bit for bit
        assert (folders[1] / f"shard-{k:05d}.npy").read_bytes() == (folders[2] / f"shard-{k:05d}.npy").read_bytes()


def test_the_command_line_default_is_the_library_default():
    from contrastive.cli import _parser

    args = _parser().parse_args(["embed", "RUN", "--out", "x", "--format", "shards", "--batch-size", "32"])
    assert args.embed.shard_rows == embedding_shards.DEFAULT_SHARD_ROWS
