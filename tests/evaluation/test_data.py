"""Which labelled data an evaluation reads: eval-data defaults and the recipe's eval section."""

import pytest

from contrastive import recipe as recipes
from contrastive.errors import RecipeError
from contrastive.evaluation.data import eval_data_components
from tests.helpers import tiny_recipe_dict


@pytest.mark.parametrize(
    "data, train_args, test_args",
    [
        ({"name": "digits", "args": {"image_size": 16}}, {"image_size": 16, "train": True}, {"image_size": 16, "train": False}),
        ({"name": "stl10", "args": {"split": "unlabeled"}}, {"split": "train"}, {"split": "test"}),
        ({"name": "imagenet", "args": {"root": "x", "crop": "whole"}},  # eval: the standard centre crop
         {"root": "x", "split": "train", "crop": "center"}, {"root": "x", "split": "val", "crop": "center"}),
    ],
)
def test_default_eval_data(registries, tmp_path, data, train_args, test_args):
    raw = tiny_recipe_dict(str(tmp_path))
    raw["data"] = data
    train, test = eval_data_components(recipes.validate(raw, registries), registries)
    assert (train.name, train.args, test.args) == (data["name"], train_args, test_args)


def test_eval_data_that_cannot_be_derived(registries, tmp_path):
    raw = tiny_recipe_dict(str(tmp_path))
    raw["data"] = {"name": "image_folder", "args": {"root": str(tmp_path)}}
    with pytest.raises(RecipeError, match="eval.train_data and eval.test_data"):
        eval_data_components(recipes.validate(raw, registries), registries)
    raw["eval"] = {"train_data": {"name": "digits"}, "test_data": {"name": "digits", "args": {"train": False}}}
    train, test = eval_data_components(recipes.validate(raw, registries), registries)
    assert train.name == "digits" and test.args == {"train": False}


@pytest.mark.parametrize(
    "section, message",
    [
        ({"protocols": ["knn", "lineer"]}, "did you mean 'linear'"),
        ({"knn_temprature": 0.1}, "did you mean 'knn_temperature'"),
        ({"knn_k": 0}, "knn_k must be at least 1"),
        ({"linear_weight_decay": "big"}, "linear_weight_decay should be"),
        ({"test_data": {"name": "digitz"}}, "eval.test_data: unknown dataset 'digitz'"),
    ],
)
def test_eval_section_validation(registries, tmp_path, section, message):
    raw = tiny_recipe_dict(str(tmp_path))
    raw["eval"] = section
    with pytest.raises(RecipeError, match=message):
        recipes.validate(raw, registries)
