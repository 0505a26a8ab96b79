"""Which labelled data an evaluation reads: eval-data defaults and the recipe's eval section."""

import pytest

from contrastive import recipe as recipes
from contrastive.errors import DataError, RecipeError
from contrastive.evaluation.data import eval_data_components, holdout_applies, resolve_protocols
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


def test_data_without_a_test_split_is_held_out(registries, tmp_path):
    raw = tiny_recipe_dict(str(tmp_path))
    raw["data"] = {"name": "image_folder", "args": {"root": str(tmp_path), "crop": "whole"}}
    raw["eval"] = {"protocols": "auto"}
    recipe = recipes.validate(raw, registries)
    train, test = eval_data_components(recipe, registries)  # the folder itself, centre-cropped; split by EvalData
    assert train == test and train.args == {"root": str(tmp_path), "crop": "center"}
    assert holdout_applies(recipe, registries)
    raw["eval"] = {"protocols": []}  # evaluation off: nothing held out
    assert not holdout_applies(recipes.validate(raw, registries), registries)
    raw["eval"] = {"train_data": {"name": "digits"}, "test_data": {"name": "digits", "args": {"train": False}}}
    recipe = recipes.validate(raw, registries)
    train, test = eval_data_components(recipe, registries)
    assert train.name == "digits" and test.args == {"train": False} and not holdout_applies(recipe, registries)


def test_resolve_protocols():
    assert resolve_protocols("auto", None) == ["knn", "linear"]
    assert resolve_protocols("auto", "x has no labels") == ["label_free"]
    assert resolve_protocols(["label_free"], "x has no labels") == ["label_free"]
    assert resolve_protocols(["linear", "label_free"], None) == ["linear", "label_free"]
    with pytest.raises(DataError, match="asks for knn, which need labels, but x has no labels"):
        resolve_protocols(["knn", "label_free"], "x has no labels")


@pytest.mark.parametrize(
    "section, message",
    [
        ({"protocols": ["knn", "lineer"]}, "did you mean 'linear'"),
        ({"knn_temprature": 0.1}, "did you mean 'knn_temperature'"),
        ({"knn_k": 0}, "knn_k must be at least 1"),
        ({"linear_weight_decay": "big"}, "linear_weight_decay should be"),
        ({"test_data": {"name": "digitz"}}, "eval.test_data: unknown dataset 'digitz'"),
        ({"protocols": "all"}, "eval.protocols should be a list of str or 'auto'"),
        ({"holdout": 0}, "eval.holdout is the share of images held out"),
        ({"holdout": 1.5}, "strictly between 0 and 1"),
        ({"holdout_in_training": "yes"}, "holdout_in_training should be bool"),
    ],
)
def test_eval_section_validation(registries, tmp_path, section, message):
    raw = tiny_recipe_dict(str(tmp_path))
    raw["eval"] = section
    with pytest.raises(RecipeError, match=message):
        recipes.validate(raw, registries)
