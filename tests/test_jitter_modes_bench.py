"""benchmarks/jitter_modes.py: its generated colour dataset and the recipes it trains (no training here)."""

import argparse
import os

import pytest
import torch

import contrastive
from tests.helpers import load_benchmark

FMNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("jitter_modes")


def test_tint_colours_each_image_and_keeps_the_shape(bench):
    gray = torch.zeros(6, 1, 4, 4, dtype=torch.uint8)
    gray[:, :, 1:3, 1:3] = 255  # a garment in the middle, background around it
    tinted = bench.dataset_class().tint(gray, torch.Generator().manual_seed(0))
    assert tinted.shape == (6, 3, 4, 4) and tinted.dtype == torch.uint8
    foreground, background = tinted[:, :, 1, 1].float(), tinted[:, :, 0, 0].float()
    assert (foreground.sum(1) > background.sum(1)).all()  # value 0.7-1 against 0.05-0.4
    assert len({tuple(c) for c in foreground.tolist()}) == 6  # a colour per image
    again = bench.dataset_class().tint(gray, torch.Generator().manual_seed(0))
    assert torch.equal(tinted, again)


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="Fashion-MNIST IDX files not installed")
@pytest.mark.parametrize("dataset", ["tinted", "fashion_mnist"])
def test_recipes_differ_only_in_the_jitter_mode(bench, tmp_path, dataset):
    registries = contrastive.load_registries(autoload=False)  # its own: the shared fixture stays as built
    registries.datasets.register("bench_fashion_mnist", bench.dataset_class())
    args = argparse.Namespace(data=FMNIST, seed=0, limit=32, epochs=1, max_steps=None)
    recipes = {mode: bench.recipe_for(dataset, mode, args, registries, tmp_path / mode, baselines=True)
               for mode in bench.MODES}
    dicts = {mode: r.to_dict() for mode, r in recipes.items()}
    jitters = {mode: next(a for a in d["augmentation"] if a["name"] == "color_jitter") for mode, d in dicts.items()}
    assert {mode: j["args"]["mode"] for mode, j in jitters.items()} == {"sequential": "sequential", "twist": "twist"}
    for d in dicts.values():
        next(a for a in d["augmentation"] if a["name"] == "color_jitter")["args"].pop("mode")
        d["trainer"].pop("output_dir")
    assert dicts["sequential"] == dicts["twist"]
    names = [a["name"] for a in dicts["twist"]["augmentation"]]
    if dataset == "tinted":
        assert names[-2:] == ["color_jitter", "grayscale"]
        assert jitters["twist"]["args"]["hue"] == 0.2
        data = registries.datasets.build("bench_fashion_mnist", **dicts["twist"]["data"]["args"])
        assert data.images.shape == (32, 3, 28, 28)
    else:
        assert dicts["twist"]["data"]["args"]["colour"] is False and "grayscale" not in names
