"""A short CPU fit end to end: every output file, exact resume, clear stops."""

import json
import shutil

import pytest
import timm
import torch
import yaml
from safetensors.torch import load_file

import contrastive
import contrastive.errors
from contrastive import recipe as recipes
from contrastive.errors import RecipeError, TrainingError
from contrastive.training import fit
from tests.helpers import tiny_recipe_dict


def run(registries, output_dir, **trainer):
    recipe = recipes.validate(tiny_recipe_dict(str(output_dir), **trainer), registries)
    return fit(recipe, registries)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, registries):
    out = tmp_path_factory.mktemp("run")
    results = run(registries, out, checkpoint_every_steps=2, keep_last=5)
    return out, results


def test_outputs(finished_run):
    out, results = finished_run
    for name in ("config.yaml", "results.json", "backbone.safetensors", "metrics.jsonl"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved["steps"] == 4 and saved["global_batch_size"] == 16
    assert saved["views_per_second"] > 0 and saved["peak_memory_mb"] > 0 and saved["wall_time_s"] > 0
    assert saved["versions"]["torch"] == torch.__version__
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["backbone"]["name"] == "resnet18"
    assert any(p["name"] == "builtin.losses" for p in config["plugins"])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(set(r) >= {"loss", "lr", "views_per_second", "epoch"} for r in records)
    assert any(p.is_file() for p in (out / "tensorboard").rglob("events.out.tfevents*"))
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step_000000002", "step_000000004"]


def test_backbone_loads_into_plain_timm_model(finished_run):
    out, _ = finished_run
    state = load_file(str(out / "backbone.safetensors"))
    model = timm.create_model("resnet18", num_classes=0)
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # cifar_stem: 3×3 stride-1 first conv
    model.maxpool = torch.nn.Identity()
    model.load_state_dict(state)


def test_resume_from_mid_run_checkpoint_is_exact(finished_run, tmp_path, registries):
    out, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "checkpoints" / "step_000000004")
    (copy / "backbone.safetensors").unlink()
    results = run(registries, copy, checkpoint_every_steps=2, keep_last=5, resume=True)
    assert results["steps"] == 4
    original, resumed = load_file(str(out / "backbone.safetensors")), load_file(str(copy / "backbone.safetensors"))
    for key in original:
        assert torch.equal(original[key], resumed[key]), key


def test_existing_run_is_not_silently_overwritten(finished_run, registries):
    out, _ = finished_run
    with pytest.raises(RecipeError, match="--trainer.resume auto"):
        run(registries, out)


def test_non_finite_loss_stops_naming_the_step(tmp_path):
    registries = contrastive.load_registries(autoload=False)

    class NaNLoss(torch.nn.Module):
        def forward(self, z_a, z_b):
            return (z_a * z_b).sum() * float("nan")

    registries.losses.register("nan_loss", NaNLoss)
    raw = tiny_recipe_dict(str(tmp_path))
    raw["loss"] = {"name": "nan_loss"}
    with pytest.raises(TrainingError, match="at step 1"):
        fit(recipes.validate(raw, registries), registries)


def test_batch_larger_than_dataset(tmp_path, registries):
    with pytest.raises(contrastive.errors.DataError, match="fewer than one global batch"):
        run(registries, tmp_path, batch_size=100000)
