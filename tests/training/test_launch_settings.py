"""The launcher's settings and the trackers (``trainer.mixed_precision``, ``log_with``, ``project``)."""

from __future__ import annotations

import importlib.util
import json
import warnings

import pytest
import yaml

from contrastive import recipe as recipes
from contrastive.errors import RecipeError
from contrastive.training import fit
from tests.helpers import tiny_recipe_dict


def _recipe(tmp_path, registries, **trainer):
    raw = tiny_recipe_dict(str(tmp_path / "run"), max_steps=1, **trainer)
    raw["eval"] = {"protocols": []}
    return recipes.validate(raw, registries)


def test_the_launchers_precision_is_followed_and_recorded(tmp_path, registries, monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what accelerate launch --mixed_precision bf16 sets
    results = fit(_recipe(tmp_path, registries), registries)
    assert results["mixed_precision"] == "bf16"
    launch = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["launch"]
    assert launch == {"mixed_precision": "bf16", "processes": 1, "device": "cpu"}


def test_a_recipe_value_that_contradicts_the_launcher_warns_naming_both(tmp_path, registries, monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = fit(_recipe(tmp_path, registries, mixed_precision="no"), registries)
    assert results["mixed_precision"] == "no"
    assert any("trainer.mixed_precision no (the recipe) overrides the launcher's mixed precision bf16" in str(w.message)
               for w in caught)


def test_trackers_are_checked_by_name_and_by_package(tmp_path, registries):
    with pytest.raises(RecipeError, match="unknown tracker 'tensorbord' — did you mean 'tensorboard'"):
        _recipe(tmp_path, registries, log_with="tensorbord")
    pytest.importorskip("tensorboard")
    if importlib.util.find_spec("wandb") is None:  # not a declared package: only its absence is tested
        with pytest.raises(RecipeError, match="trainer.log_with wandb: not installed; pip install wandb"):
            fit(_recipe(tmp_path, registries, log_with=["tensorboard", "wandb"]), registries)


def test_no_tracker_and_a_project_name(tmp_path, registries):
    assert fit(_recipe(tmp_path, registries, log_with=[]), registries)["steps"] == 1
    assert not (tmp_path / "run" / "tensorboard").exists()
    fit(_recipe(tmp_path, registries, project="my-ssl", overwrite=True), registries)
    assert (tmp_path / "run" / "tensorboard" / "my-ssl").is_dir()  # TensorBoard's run folder is the project name
    assert json.loads((tmp_path / "run" / "results.json").read_text())["steps"] == 1


def test_a_global_batch_runs_as_batch_size_times_accumulate(tmp_path, registries):
    results = fit(_recipe(tmp_path, registries, global_batch_size=32, max_device_batch=8), registries)
    assert results["global_batch_size"] == 32
    trainer = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["trainer"]
    assert (trainer["batch_size"], trainer["accumulate"], trainer["global_batch_size"]) == (8, 4, 32)


def _without_tensorboard(monkeypatch):
    """As if neither tensorboard nor tensorboardX were installed: unimportable, and absent from the
    trackers Accelerate found when it was imported."""
    import sys

    import accelerate.tracking

    for name in ("tensorboard", "tensorboardX"):
        monkeypatch.setitem(sys.modules, name, None)
    found = [t for t in accelerate.tracking._available_trackers if str(t) != "tensorboard"]
    monkeypatch.setattr(accelerate.tracking, "_available_trackers", found)


def test_the_default_tracker_falls_back_to_metrics_jsonl_without_tensorboard(tmp_path, registries, monkeypatch):
    _without_tensorboard(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fit(_recipe(tmp_path, registries), registries)["steps"] == 1
    said = [str(w.message) for w in caught if "TensorBoard" in str(w.message)]
    assert said == ["TensorBoard is not installed: this run logs to metrics.jsonl only (pip install tensorboard, "
                    "or pick a tracker with --trainer.log_with)"]
    assert not (tmp_path / "run" / "tensorboard").exists()
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1


def test_tensorboard_named_explicitly_without_the_package_is_an_error(tmp_path, registries, monkeypatch):
    _without_tensorboard(monkeypatch)
    with pytest.raises(RecipeError, match="trainer.log_with tensorboard: not installed; pip install tensorboard"):
        fit(_recipe(tmp_path, registries, log_with="tensorboard"), registries)
