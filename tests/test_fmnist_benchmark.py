"""``benchmarks/fmnist.py``'s lightly reference of DINO, on a few random images: lightly's
``DINOTransform`` from the preset's view groups, and the training loop with the preset's AdamW,
clipping and the last layer kept still by lightly's ``cancel_last_layer_gradients`` while frozen.
(That the preset is what the benchmark trains: tests/recipe/test_recipe.py.)"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import contrastive
from contrastive import recipe as recipes
from tests.helpers import load_benchmark
from tests.methods.test_stateful_distributed import ConvPool

pytest.importorskip("lightly")


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("fmnist")


@pytest.fixture(scope="module")
def registries():
    return contrastive.load_registries(autoload=False)


def test_dino_transform_draws_the_presets_global_and_local_crops(bench, registries):
    recipe = recipes.load("dino_fmnist_cpu", registries=registries)
    image = Image.fromarray(torch.randint(0, 255, (28, 28), dtype=torch.uint8).numpy(), mode="L").convert("RGB")
    views = bench.dino_transform(recipe)(image)
    assert [tuple(v.shape) for v in views] == [(3, 16, 16)] * 2 + [(3, 8, 8)] * 4


def test_lightly_dino_trains_with_the_last_layer_frozen_for_its_steps(bench, registries):
    recipe = recipes.load("dino_fmnist_cpu", ["--trainer.max_epochs", "1", "--trainer.max_steps", "3"], registries)
    torch.manual_seed(0)
    backbone = ConvPool()  # a tiny backbone: the loop, not the network, is under test
    model, step, after_backward = bench.lightly_dino(backbone, recipe, total_steps=3, steps_per_epoch=2)
    head = model[1]
    start = {k: v.detach().clone() for k, v in head.state_dict().items()}
    batches = [[torch.rand(4, 3, 16, 16) for _ in range(2)] + [torch.rand(4, 3, 8, 8) for _ in range(4)]
               for _ in range(3)]
    seen = []

    def watched():
        after_backward()
        seen.append(head.last_layer.weight_v.grad is None)

    result = bench.lightly_train(recipe, {"loader": batches}, model, step, "dino", watched)
    assert seen == [True, True, False]  # freeze_last_layer_epochs 1 = the 2 steps of an epoch here
    assert result["views_per_second"] > 0 and torch.isfinite(torch.tensor(result["loss"]))
    assert not torch.equal(head.layers[0].weight, start["layers.0.weight"])  # the MLP trained from step 1
