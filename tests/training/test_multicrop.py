"""Multi-crop: view groups of different sizes train, accumulate and resume exactly."""

from __future__ import annotations

import pytest
import torch

import contrastive
from contrastive import recipe as recipes
from contrastive.errors import RecipeError
from contrastive.training import fit
from tests.helpers import assert_resume_is_exact, tiny_recipe_dict


def multicrop_recipe(output_dir, **trainer) -> dict:
    raw = tiny_recipe_dict(str(output_dir), **trainer)
    global_views = raw.pop("augmentation")
    local_views = [{"name": "random_resized_crop", "args": {"size": 8, "scale": [0.1, 0.4]}},
                   {"name": "horizontal_flip", "args": {"p": 0.5}}]
    raw["views"] = [{"count": 2, "augmentation": global_views}, {"count": 4, "augmentation": local_views}]
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    return raw


def test_multicrop_trains_and_resumes_exactly(tmp_path, registries):
    out = tmp_path / "run"
    results = fit(recipes.validate(multicrop_recipe(out, checkpoint_every_steps=2, keep_last=5), registries), registries)
    assert results["steps"] == 4 and results["views_per_image"] == 6 and torch.isfinite(torch.tensor(results["loss"]))
    assert_resume_is_exact(out, tmp_path / "copy",
                           lambda copy_dir: fit(recipes.validate(multicrop_recipe(copy_dir, checkpoint_every_steps=2, keep_last=5, resume=True), registries), registries))


def test_multicrop_with_accumulation(tmp_path, registries):
    results = fit(recipes.validate(multicrop_recipe(tmp_path, max_steps=2, batch_size=8, accumulate=2), registries),
                  registries)
    assert results["global_batch_size"] == 16 and torch.isfinite(torch.tensor(results["loss"]))


def test_views_the_method_cannot_take_stop_before_training(tmp_path, registries):
    raw = multicrop_recipe(tmp_path)
    raw["views"] = [{"count": 1, "augmentation": raw["views"][0]["augmentation"]}]
    with pytest.raises(RecipeError, match="method 'simclr': simclr needs at least 2 views per image, the recipe gives 1"):
        fit(recipes.validate(raw, registries), registries)
    raw = multicrop_recipe(tmp_path)
    registries_with_pair_loss = contrastive.load_registries(autoload=False)  # fresh: a loss that compares pairs only

    class PairOnly(torch.nn.Module):
        def forward(self, z_a, z_b):
            return (z_a - z_b).pow(2).mean()

    registries_with_pair_loss.losses.register("pair_only", PairOnly)
    raw["loss"] = {"name": "pair_only"}
    with pytest.raises(RecipeError, match="simclr with 6 views needs a loss with a multi-view form"):
        fit(recipes.validate(raw, registries_with_pair_loss), registries_with_pair_loss)
    assert not (tmp_path / "checkpoints").exists()


def test_a_method_that_cannot_replay_refuses_accumulation(tmp_path):
    from contrastive.methods.simclr import SimCLR

    class Unreplayable(SimCLR):
        replayable = False

    registries = contrastive.load_registries(autoload=False)
    registries.methods.register("unreplayable", Unreplayable)
    raw = tiny_recipe_dict(str(tmp_path), accumulate=2, batch_size=8)
    raw["method"] = {"name": "unreplayable"}
    with pytest.raises(RecipeError, match="'unreplayable' cannot replay its forward pass.*--trainer.accumulate 1"):
        fit(recipes.validate(raw, registries), registries)


def test_a_method_can_refuse_the_data_before_training(tmp_path):
    from contrastive.methods.simclr import SimCLR

    class NeedsMore(SimCLR):
        def check_data(self, num_samples, global_batch):
            raise RecipeError(f"needs more than {num_samples} images in steps of {global_batch}")

    registries = contrastive.load_registries(autoload=False)
    registries.methods.register("needs_more", NeedsMore)
    raw = tiny_recipe_dict(str(tmp_path))
    raw["method"] = {"name": "needs_more"}
    with pytest.raises(RecipeError, match=r"method 'needs_more': needs more than 1347 images in steps of 16"):
        fit(recipes.validate(raw, registries), registries)
    assert not (tmp_path / "checkpoints").exists()
