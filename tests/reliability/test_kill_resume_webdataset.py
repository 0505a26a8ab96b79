"""SIGKILL a real ``contrastive fit`` on webdataset shards mid-epoch, resume, and get the
uninterrupted run's model bit for bit — the resume rule docs/own-images.md states: the epoch's
shard order and shuffle buffers are replayed from the seed and each reader skips, before decoding,
the samples of the batches taken before the checkpoint.

96 images in 6 shards of 16, batch 16 on one process with 2 DataLoader workers (each reads 3
shards): 6 steps an epoch, 2 epochs; checkpoints every 3 steps.  Killed once step 10 is logged,
the run resumes from step 9 — epoch 1, 3 batches in, an odd number, so the workers' roles rotate
(DataLoader worker 0 then gives batch 3, which is reader 1's).
"""

from __future__ import annotations

import re

import pytest

from tests.helpers import image_folder, shard_folder

from .conftest import assert_same_tensors, kill_recipe, kill_when, logged_steps, run_fit, start_fit, write_recipe


def shard_recipe(shards, out) -> dict:
    recipe = kill_recipe(out, num_workers=2, checkpoint_every=100, checkpoint_every_steps=3)
    recipe["data"] = {"name": "webdataset", "args": {"urls": str(shards / "train-{000000..000005}.tar"),
                                                     "image_size": 16, "shuffle_buffer": 20}}
    return recipe


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("kill_wds")
    shard_folder(image_folder(base / "folder", per_class=32), base / "shards", shard_size=16)
    return base / "shards"


def test_sigkill_mid_epoch_then_resume_continues_the_stream_exactly(shards, tmp_path):
    reference = tmp_path / "reference"
    done = run_fit(write_recipe(tmp_path / "reference.yaml", shard_recipe(shards, reference)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert logged_steps(reference) == list(range(1, 13))

    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "recipe.yaml", shard_recipe(shards, out))
    first = start_fit(recipe, tmp_path / "first.log")
    kill_when(first, lambda: 10 in logged_steps(out))

    resumed = run_fit(recipe, "--trainer.resume", "true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    found = re.search(r"resumed from .*step_(\d+) \(epoch (\d+), step (\d+)\)", resumed.stdout + resumed.stderr)
    assert found and found.groups() in (("000000009", "1", "9"),), found and found.groups()
    assert logged_steps(out) == list(range(1, 13))
    final = "step_000000012"
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert_same_tensors(reference / "checkpoints" / final / name, out / "checkpoints" / final / name)
    assert_same_tensors(reference / "backbone.safetensors", out / "backbone.safetensors")
