"""Evaluation on every process: 2 and 4 gloo processes extract exactly (bit for bit, CPU) the features
of one, ``contrastive eval`` / ``embed`` under a 2-process launch print and write what one process
does, and a slow evaluation (longer than ``trainer.collective_timeout``) never stalls a 2-process fit."""

from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import torch
import yaml
from torch import nn

from contrastive.evaluation.features import EvalTransform, extract_features, shard
from tests.helpers import run_gloo, run_ranks, tiny_recipe_dict, write_distribution

COUNT = 37  # not divisible by 2 or 4, nor is its number of batches of BATCH
BATCH = 4
SUBSET = [0, 2, 3, 5, 8, 13, 21, 22, 23, 30, 31, 36]


def _data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (COUNT, 1, 12, 12), dtype=torch.uint8, generator=g)
    labels = torch.arange(COUNT) % 5

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return COUNT

        def __getitem__(self, i):
            return images[i], int(labels[i])

    return Data()


def _backbone() -> nn.Module:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with torch.no_grad():  # running statistics that are not the identity
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model


def _extract(group=None):
    transform = EvalTransform(in_chans=3, size=(16, 16))
    whole = extract_features(_backbone(), _data(), transform, batch_size=BATCH, group=group)
    part = extract_features(_backbone(), _data(), transform, batch_size=BATCH, indices=SUBSET, group=group)
    pixels = extract_features(None, _data(), transform, batch_size=BATCH, group=group)
    return {"whole": whole, "part": part, "pixels": pixels}


def _one_rank(rank: int, world: int) -> dict:
    from contrastive.distributed import evaluation_group

    return _extract(evaluation_group(60))


def test_shards_cover_every_sample_once_in_whole_batches():
    for count in (0, 1, 3, 37, 40):
        for world in (1, 2, 3, 4, 7):
            parts = [shard(count, BATCH, world, r) for r in range(world)]
            assert [i for p in parts for i in p] == list(range(count))
            assert all(p.start % BATCH == 0 for p in parts)


def test_two_and_four_processes_extract_the_features_of_one(tmp_path):
    expected = _extract()
    by_world = run_gloo(_one_rank, worlds=(2, 4), tmp_path=tmp_path)
    for world, results in by_world.items():
        for got in results:  # every process has every row, in order
            for key, (feats, labels) in expected.items():
                assert torch.equal(got[key][0], feats), (world, key)  # bit for bit
                assert torch.equal(got[key][1], labels), (world, key)


# -- the commands under a 2-process launch --------------------------------------------------------
def test_eval_and_embed_launched_on_two_processes_match_one(tiny_run, tmp_path):
    eval_args = ["eval", str(tiny_run), "--eval.baselines", "[]"]
    code, one = run_ranks(eval_args, world=1)
    assert code == 0, one[-3000:]
    code, two = run_ranks(eval_args, world=2)
    assert code == 0, two[-3000:]
    assert "kNN top-1" in one and "linear top-1" in one
    assert two.strip() == one.strip()  # the same table, printed once (rank 1 prints nothing)

    files = {world: tmp_path / f"embed{world}.npz" for world in (1, 2)}
    for world, path in files.items():
        code, output = run_ranks(["embed", str(tiny_run), "--out", str(path)], world=world)
        assert code == 0, output[-3000:]
        assert output.count("wrote") == 1
    one, two = np.load(files[1]), np.load(files[2])
    assert one["embeddings"].shape == (180, two["embeddings"].shape[1])
    assert np.array_equal(one["embeddings"], two["embeddings"]) and np.array_equal(one["labels"], two["labels"])


# -- a slow evaluation never stalls a 2-process fit -----------------------------------------------
SLOW_PLUGIN = """
import time

import torch
import torch.distributed as dist
from torch import nn

from contrastive import hookimpl

SECONDS = 6.0  # longer than the run's trainer.collective_timeout (5 s)


def _main_process():
    return not dist.is_initialized() or dist.get_rank() == 0


class SlowToEvaluate(nn.Module):
    \"\"\"A tiny conv net whose switch to eval mode after training started takes SECONDS on rank 0 every
    second time: each evaluation (train features, then test features) is SECONDS slower there.\"\"\"

    num_features = 8

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.trained, self.switches = False, 0

    def forward(self, x):
        self.trained = self.trained or self.training
        return self.conv(x).mean(dim=(2, 3))

    def train(self, mode=True):
        if not mode and self.training and self.trained and _main_process():
            self.switches += 1
            if self.switches % 2:
                time.sleep(SECONDS)
        return super().train(mode)


def slow(train_x, train_y, test_x, test_y, *, num_classes, config, seed):
    \"\"\"Takes SECONDS on rank 0 only: the other process finishes its protocols first.\"\"\"
    if _main_process():
        time.sleep(SECONDS)
    return {"rows": float(test_x.shape[0])}


@hookimpl
def contrastive_register(registries):
    registries.backbones.register("slow_to_evaluate", SlowToEvaluate)
    registries.protocols.register("slow", slow)
"""


def test_a_slow_evaluation_does_not_stall_a_two_process_fit(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    write_distribution(site, textwrap.dedent(SLOW_PLUGIN), dist="slow-eval", package="slow_eval", entry_point="slow_eval")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("CONTRASTIVE_DISABLE_PLUGIN_AUTOLOAD", "0")
    out = tmp_path / "run"
    raw = tiny_recipe_dict(str(out), max_steps=None, max_epochs=2, batch_size=16, collective_timeout=5)
    raw["data"]["args"]["test_fraction"] = 0.95  # 89 training images: 2 steps an epoch on 2 processes
    raw["backbone"] = {"name": "slow_to_evaluate", "args": {}}
    raw["eval"] = {"protocols": ["knn", "slow"], "baselines": [], "monitor_every": 1, "monitor_max_samples": 40,
                   "batch_size": 8}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, output = run_ranks(["fit", "--recipe", str(path)])
    assert code == 0, output[-5000:]
    results = json.loads((out / "results.json").read_text())
    assert results["processes"] == 2 and results["epochs"] == 2
    assert results["eval"]["slow_rows"] == results["eval"]["num_test"]  # every process had every test feature
    assert 0.0 <= results["eval"]["knn_top1"] <= 1.0
    monitor = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "knn_top1" in r]
    assert [r["epoch"] for r in monitor] == [0, 1]
