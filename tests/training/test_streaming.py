"""Training on a stream: the same images written as tar shards train with ``--data.name webdataset`` on
one process and on two gloo CPU processes, with uneven shards (the schedule, checkpoints and steps
per epoch as for a map-style dataset; no process waits for a batch another lacks), and the
:class:`StreamLoader`'s rules for shards, processes and workers."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from contrastive import recipe as recipes
from contrastive.components.datasets import webdataset
from contrastive.errors import DataError
from contrastive.training import fit
from contrastive.training.streaming import StreamLoader
from tests.helpers import image_folder, run_ranks, shard_folder, tiny_recipe_dict

URLS = "train-{000000..000004}.tar"  # 48 images in shards of 10, 10, 10, 10, 8


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("stream")
    shard_folder(image_folder(base / "folder"), base / "shards", shard_size=10)
    return base / "shards"


def stream_recipe(shards, out, **trainer) -> dict:
    recipe = tiny_recipe_dict(str(out), **{"max_steps": None, "max_epochs": 2, "batch_size": 8, "num_workers": 2,
                                           "checkpoint_every": 1, **trainer})
    recipe["data"] = {"name": "webdataset", "args": {"urls": str(shards / URLS), "image_size": 16}}
    recipe["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    return recipe


def steps_of(out) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_one_process_trains_whole_epochs_of_the_stream(shards, tmp_path, registries, capsys):
    out = tmp_path / "run"
    results = fit(recipes.validate(stream_recipe(shards, out, checkpoint_every_steps=4, keep_last=10), registries), registries)
    assert results["steps"] == 12  # 48 // 8 = 6 steps an epoch, 2 epochs
    assert steps_of(out) == list(range(1, 13))
    assert results["skipped_files"] == {"count": 0, "first": []}
    progress = json.loads((out / "checkpoints" / "step_000000012" / "state.json").read_text())["progress"]
    assert progress["steps_per_epoch"] == 6 and progress["epoch"] == 2
    assert progress["data_readers"] == "1 processes x 2 workers"
    # resumed mid-epoch (step 4) with another number of workers: it goes on, and says what that changes
    for path in (out / "checkpoints").iterdir():
        if path.name != "step_000000004":
            shutil.rmtree(path)
    capsys.readouterr()
    again = stream_recipe(shards, out, num_workers=1, resume=True)
    assert fit(recipes.validate(again, registries), registries)["steps"] == 12
    printed = capsys.readouterr().out
    assert "was streamed by 1 processes x 2 workers, this run by 1 processes x 1 workers" in printed
    assert "resumed from" in printed and "step 4)" in printed


def test_two_processes_take_the_same_batches_per_epoch_from_uneven_shards(shards, tmp_path):
    """5 shards for 2 processes of 2 workers: readers hold 2, 1, 1, 1 shards; every process still
    takes 6 batches of 4 an epoch (48 // 8), so the run ends instead of waiting in a collective."""
    out = tmp_path / "run2"
    recipe = stream_recipe(shards, out, batch_size=4, collective_timeout=120)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    code, output = run_ranks(["fit", "--recipe", str(path)], timeout=400)
    assert code == 0, output[-3000:]
    assert steps_of(out) == list(range(1, 13))
    saved = json.loads((out / "results.json").read_text())
    assert saved["processes"] == 2 and saved["global_batch_size"] == 8 and saved["steps"] == 12


def test_stream_loader_needs_a_shard_per_process_and_caps_the_workers(shards, capsys):
    data = webdataset(str(shards / URLS), image_size=8)
    cpu = torch.device("cpu")
    with pytest.raises(DataError, match=r"5 shard\(s\), fewer than the 6 processes.*--shard-size"):
        StreamLoader(data, batch_size=4, processes=6, rank=0, workers=0, device=cpu, seed=0)
    loader = StreamLoader(data, batch_size=4, processes=2, rank=0, workers=8, device=cpu, seed=0)
    assert loader.workers == 2 and len(loader) == 6  # 5 // 2 shards a process; 48 // (4 × 2) steps
    assert "8 data loader workers but 2 shard(s) per process: using 2" in capsys.readouterr().out
    batches = list(loader.epoch(0))
    assert len(batches) == 6 and all(b[0].shape == (4, 3, 8, 8) for b in batches)
