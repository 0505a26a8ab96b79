"""The run's plan (contrastive.plan): computed once, recorded in config.yaml, read back by eval,
embed, export and report; the recipe is never changed."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import contrastive
from contrastive import recipe as recipes
from contrastive.evaluation import EvalData, evaluate
from contrastive.evaluation.runs import embed, open_run
from contrastive.plan import RunPlan, compute_plan, is_normalization
from contrastive.tools.export import export
from contrastive.training import fit
from tests.helpers import tiny_recipe_dict


class OutputCrop(nn.Module):
    """A plugin's crop whose size argument is called ``output`` (not ``size``): the centre half, resized."""

    def __init__(self, output: int = 24) -> None:
        super().__init__()
        self.output = output

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        centre = images[..., h // 4 : h - h // 4, w // 4 : w - w // 4]
        return F.interpolate(centre, size=(self.output, self.output), mode="bilinear", align_corners=False)


class Standardise(nn.Module):
    """A plugin's normalisation step, not named ``normalize``: found by its marker."""

    normalizes = True

    def __init__(self, mean: float = 0.5, std: float = 0.25) -> None:
        super().__init__()
        self.mean, self.std = (mean,), (std,)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean[0]) / self.std[0]


@pytest.fixture(scope="module")
def plugin_registries():
    registries = contrastive.load_registries(autoload=False)
    registries.augmentations.register("output_crop", OutputCrop)
    registries.augmentations.register("standardise", Standardise)
    return registries


def _recipe(tmp_path, registries, **trainer):
    raw = tiny_recipe_dict(str(tmp_path / "run"), max_steps=2, **trainer)
    raw["augmentation"] = [{"name": "output_crop", "args": {"output": 24}},
                           {"name": "horizontal_flip", "args": {"p": 0.5}},
                           {"name": "standardise", "args": {"mean": 0.5, "std": 0.25}}]
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": False}}
    raw["eval"] = {"protocols": ["knn"], "baselines": [], "knn_k": 5}
    return recipes.validate(raw, registries)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, plugin_registries):
    """One tiny run with the plugin crop, a global batch to resolve, and a kNN evaluation."""
    tmp_path = tmp_path_factory.mktemp("plan")
    recipe = _recipe(tmp_path, plugin_registries, batch_size=8, global_batch_size=16)
    before = copy.deepcopy(recipe)
    results = fit(recipe, plugin_registries)
    return tmp_path / "run", recipe, before, results


def test_fit_does_not_change_the_recipe(trained):
    run, recipe, before, results = trained
    assert recipe == before  # neither the batch resolution nor the evaluation set-up wrote into it
    assert recipe.trainer.batch_size == 8 and results["global_batch_size"] == 16
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["trainer"]["batch_size"] == 16 and saved["trainer"]["accumulate"] == 1  # the run's recipe: resolved


def test_a_plugin_crop_named_output_trains_evaluates_and_exports(trained, plugin_registries, tmp_path):
    run, _, _, results = trained
    assert "knn_top1" in results["eval"]
    plan = yaml.safe_load((run / "config.yaml").read_text())["plan"]
    assert plan["view_sizes"] == [[24, 24]] and plan["protocols"] == ["knn"]
    assert plan["normalization"] == {"index": 2, "mean": [0.5], "std": [0.25]}
    assert plan["batch_size"] == 16 and plan["accumulate"] == 1 and plan["processes"] == 1
    recipe, backbone, plan = open_run(run, plugin_registries)
    again = evaluate(backbone, recipe, plugin_registries, device="cpu", plan=plan)
    assert again["knn_top1"] == pytest.approx(results["eval"]["knn_top1"])
    summary = export(run, tmp_path / "export", plugin_registries)
    assert "model.safetensors" in summary["files"]
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [3, 24, 24]
    assert config["pretrained_cfg"]["mean"][0] == 0.5 and config["pretrained_cfg"]["std"][0] == 0.25
    summary = embed(run, tmp_path / "emb.npz", plugin_registries, split="test", device="cpu")
    assert summary["shape"][0] > 0


def test_the_recorded_plan_round_trips_and_eval_reads_it(trained, plugin_registries, tmp_path):
    run, _, _, _ = trained
    config = yaml.safe_load((run / "config.yaml").read_text())
    plan = RunPlan.from_dict(config["plan"])
    assert RunPlan.from_dict(yaml.safe_load(yaml.safe_dump(plan.to_dict()))) == plan
    assert plan.view_size == (24, 24) and plan.global_batch == 16
    recipe, _, read = open_run(run, plugin_registries)
    assert read == plan
    # a run written before plans were recorded: the same plan, computed from its recipe
    old = tmp_path / "old"
    old.mkdir()
    for name in ("backbone.safetensors",):
        (old / name).write_bytes((run / name).read_bytes())
    (old / "config.yaml").write_text(yaml.safe_dump({k: v for k, v in config.items() if k != "plan"}, sort_keys=False))
    assert open_run(old, plugin_registries)[2] == plan
    # eval takes the view size from the recorded plan, not from the augmentation
    config["plan"]["view_sizes"] = [[20, 20]]
    (old / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    recipe, _, read = open_run(old, plugin_registries)
    assert EvalData.from_recipe(recipe, plugin_registries, plan=read).transform.size == (20, 20)


def test_computing_a_plan_leaves_the_recipe_and_the_rng_alone(plugin_registries, tmp_path):
    recipe = _recipe(tmp_path, plugin_registries, global_batch_size=32, max_device_batch=16)
    before, state = copy.deepcopy(recipe), torch.get_rng_state()
    plan = compute_plan(recipe, plugin_registries, processes=2)
    assert recipe == before and torch.equal(state, torch.get_rng_state())
    assert (plan.batch_size, plan.accumulate, plan.processes, plan.global_batch) == (16, 1, 2, 32)
    assert plan.view_sizes == ((24, 24),) and plan.normalization.index == 2
    run_recipe = plan.applied_to(recipe)
    assert run_recipe is not recipe and run_recipe.trainer.batch_size == 16 and recipe == before


def test_the_builtin_normalize_carries_the_marker(registries):
    assert is_normalization(registries.augmentations.build("normalize"))
    assert not is_normalization(registries.augmentations.build("horizontal_flip"))
