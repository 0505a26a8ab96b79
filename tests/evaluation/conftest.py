"""Fixtures shared by the evaluation tests."""

from __future__ import annotations

import pytest

from contrastive import recipe as recipes
from contrastive.training import fit
from tests.helpers import tiny_recipe_dict


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, registries):
    """One step of a tiny run on digits (evaluation: 1617 train / 180 test images, no protocols at
    fit), for the commands that read a finished run: eval, embed."""
    out = tmp_path_factory.mktemp("tinyevalrun")
    raw = tiny_recipe_dict(str(out), max_steps=1, batch_size=16)
    raw["data"]["args"]["test_fraction"] = 0.1
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    raw["eval"] = {"protocols": [], "batch_size": 128, "linear_max_iter": 30}
    fit(recipes.validate(raw, registries), registries)
    return out
