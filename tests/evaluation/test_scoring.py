"""Whole evaluations of a backbone: the random-init baseline."""

import torch

from contrastive import recipe as recipes
from contrastive.evaluation.scoring import random_init_backbone
from tests.helpers import tiny_recipe_dict


def test_random_init_is_seeded(registries, tmp_path):
    recipe = recipes.validate(tiny_recipe_dict(str(tmp_path)), registries)
    a, b = random_init_backbone(recipe, registries), random_init_backbone(recipe, registries)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
