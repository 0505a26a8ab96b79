"""A plain ``pip install contrastive-ssl`` has neither scikit-learn, scipy nor TensorBoard: the
quickstart's path (data — the generated shapes, or digits — split, training, kNN and linear
probe) must need none of them."""

import json
import sys
import warnings

import pytest

from contrastive import recipe as recipes
from contrastive.training import fit
from tests.helpers import tiny_recipe_dict


@pytest.mark.parametrize("data", ["shapes", "digits"])
def test_fit_and_evaluate_without_the_optional_packages(data, tmp_path, registries, monkeypatch):
    for name in ("sklearn", "scipy", "tensorboard", "tensorboardX"):
        monkeypatch.setitem(sys.modules, name, None)  # importing any of them now fails
    raw = tiny_recipe_dict(str(tmp_path / "run"), max_steps=2)
    raw["data"]["name"] = data
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    raw["eval"] = {"protocols": ["knn", "linear"], "baselines": [], "linear_weight_decay": 1e-3, "linear_max_iter": 20}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = fit(recipes.validate(raw, registries), registries)
    assert results["steps"] == 2 and 0.0 <= results["eval"]["linear_top1"] <= 1.0
    assert any("TensorBoard is not installed" in str(w.message) for w in caught)
    assert json.loads((tmp_path / "run" / "results.json").read_text())["eval"]["knn_top1"] == results["eval"]["knn_top1"]
