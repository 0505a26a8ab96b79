"""Evaluation of a run trained on a stream (``webdataset``): test shards from the index (``contrastive
shard --holdout``) or ``test_urls``, read into memory with the centre crop, the probes' train data
the head of the training shards; no test data -> evaluation off with a note (fit) or one line
(``contrastive eval``, an explicit protocol); a stream named as eval data is read into memory."""

from __future__ import annotations

import json

import pytest

from contrastive import recipe as recipes
from contrastive.cli import main
from contrastive.components.datasets import ShardImages
from contrastive.errors import DataError
from contrastive.evaluation import EvalData, training_dataset
from contrastive.evaluation.data import build_dataset, plan_eval
from contrastive.plan import compute_plan
from contrastive.recipe import Component
from tests.helpers import image_folder, shard_folder, tiny_recipe_dict


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """36 labelled pictures: 27 in 3 train shards, 9 held out in a test shard."""
    base = tmp_path_factory.mktemp("stream_eval")
    shard_folder(image_folder(base / "folder", per_class=12), base / "with_test", shard_size=10, holdout=0.25)
    shard_folder(image_folder(base / "folder", per_class=12), base / "train_only", shard_size=10)
    return base


def stream_recipe(registries, urls, out, **eval_section):
    raw = tiny_recipe_dict(str(out), max_steps=1, batch_size=8)
    raw["data"] = {"name": "webdataset", "args": {"urls": str(urls), "image_size": 16}}
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    raw["eval"] = {"protocols": "auto", "knn_k": 5, "linear_max_iter": 20, "baselines": [], **eval_section}
    return recipes.validate(raw, registries)


def test_test_shards_of_the_index_are_the_test_data(shards, registries, tmp_path):
    recipe = stream_recipe(registries, shards / "with_test" / "train-{000000..000002}.tar", tmp_path,
                           monitor_every=1)
    plan = plan_eval(recipe, registries)
    assert plan.protocols == ["knn", "linear"] and plan.monitor and not plan.off
    assert "test-000000.tar" in plan.summary
    data = EvalData.from_recipe(recipe, registries)
    assert isinstance(data.train, ShardImages) and isinstance(data.test, ShardImages)
    assert (len(data.train), len(data.test), data.num_classes) == (27, 9, 3)
    assert data.train.crop == data.test.crop == "center"
    capped = stream_recipe(registries, shards / "with_test" / "train-{000000..000002}.tar", tmp_path)
    capped.data.args["in_memory_samples"] = 12
    assert len(EvalData.from_recipe(capped, registries).train) == 12  # the first 12 of the training shards


def test_test_urls_name_other_shards(shards, registries, tmp_path):
    recipe = stream_recipe(registries, shards / "train_only" / "train-{000000..000003}.tar", tmp_path)
    recipe.data.args["test_urls"] = str(shards / "with_test" / "test-000000.tar")
    assert len(EvalData.from_recipe(recipe, registries).test) == 9


def test_without_test_data_fit_turns_evaluation_off_with_a_note(shards, registries, tmp_path, capsys):
    recipe = stream_recipe(registries, shards / "train_only" / "train-{000000..000003}.tar", tmp_path, monitor_every=2)
    plan = plan_eval(recipe, registries)
    assert plan.off and plan.protocols == [] and not plan.monitor
    training_dataset(recipe, registries)
    note = capsys.readouterr().out
    assert "evaluation (and the online kNN of eval.monitor_every 2) skipped" in note
    assert "contrastive shard FOLDER OUT/ --holdout 0.1" in note and "--data.args.test_urls" in note
    assert recipe.eval.monitor_every == 2  # the recipe is not changed: the run's plan switches evaluation off
    run_recipe = compute_plan(recipe, registries).applied_to(recipe)
    assert run_recipe.eval.protocols == [] and run_recipe.eval.monitor_every == 0  # what config.yaml will record
    with pytest.raises(DataError, match="evaluation has no test data"):
        EvalData.from_recipe(stream_recipe(registries, shards / "train_only" / "train-{000000..000003}.tar", tmp_path),
                             registries)
    explicit = stream_recipe(registries, shards / "train_only" / "train-{000000..000003}.tar", tmp_path,
                             protocols=["label_free"])
    with pytest.raises(DataError, match="asks for label_free, but .* streams and has no test data"):
        plan_eval(explicit, registries)


def test_a_stream_named_as_eval_data_is_read_into_memory(shards, registries, tmp_path):
    test = {"name": "webdataset", "args": {"urls": str(shards / "with_test" / "test-000000.tar"), "image_size": 16}}
    recipe = stream_recipe(registries, shards / "train_only" / "train-{000000..000003}.tar", tmp_path, test_data=test)
    data = EvalData.from_recipe(recipe, registries)
    assert isinstance(data.test, ShardImages) and len(data.test) == 9 and len(data.train) == 36
    stream = Component("webdataset", {"urls": str(shards / "with_test" / "test-000000.tar"), "in_memory": False})
    with pytest.raises(DataError, match="is a stream, and evaluation reads images by index.*in_memory"):
        build_dataset(stream, registries, "eval.test_data")


def test_eval_of_a_run_without_test_data_is_one_line_and_test_data_can_be_given(shards, tmp_path, capsys):
    out = tmp_path / "run"
    command = ["fit", "--recipe", "simclr_folder", "--data.name", "webdataset", "--data.args.urls",
               str(shards / "train_only" / "train-{000000..000003}.tar"), "--data.args.image_size", "16",
               "--augmentation.0.args.size", "16", "--backbone.name", "test_resnet", "--trainer.batch_size", "8",
               "--trainer.max_steps", "1", "--trainer.progress", "false", "--trainer.num_workers", "0",
               "--trainer.output_dir", str(out)]
    assert main(command) == 0
    assert "evaluation (and the online kNN of eval.monitor_every 10) skipped" in capsys.readouterr().out
    assert "eval" not in json.loads((out / "results.json").read_text())
    assert main(["eval", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evaluation has no test data" in err
    assert main(["eval", str(out), "--json", "--eval.test_data.name", "webdataset", "--eval.test_data.args.urls",
                 str(shards / "with_test" / "test-000000.tar"), "--eval.test_data.args.image_size", "16",
                 "--eval.baselines", "[]"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert 0 <= scores["knn_top1"] <= 1 and scores["num_test"] == 9 and scores["num_train"] == 36
