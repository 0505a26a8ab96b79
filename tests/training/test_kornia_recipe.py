"""The shipped ``quickstart_kornia`` recipe — the quickstart with three Kornia augmentations added
to its pipeline — trains, resumes bit-exactly from a mid-run checkpoint and evaluates (cut to 4
steps of 16 images, 96 shapes)."""

from __future__ import annotations

import shutil

import torch
from safetensors.torch import load_file

from contrastive import recipe as recipes
from contrastive.training import fit

KORNIA_STEPS = ["kornia_random_rotation", "kornia_random_sharpness", "kornia_random_erasing"]


def quickstart_with_kornia(output_dir: str, **trainer) -> dict:
    raw = recipes.read_recipe("quickstart_kornia")
    assert raw["augmentation"][:4] == recipes.read_recipe("quickstart")["augmentation"]
    raw["data"]["args"].update(num_train=96, num_test=40)
    raw["trainer"].update(max_epochs=1, max_steps=4, batch_size=16, output_dir=output_dir, progress=False,
                          log_with=[], checkpoint_every_steps=2, keep_last=5, **trainer)  # fmt: skip
    raw["eval"] = {"protocols": ["knn"], "monitor_every": 0}
    raw["report"] = False
    return raw


def test_quickstart_with_three_kornia_augmentations_trains_resumes_exactly_and_evaluates(tmp_path, registries):
    out = tmp_path / "run"
    recipe = recipes.validate(quickstart_with_kornia(str(out)), registries)
    assert [a.name for a in recipe.augmentation][4:] == KORNIA_STEPS
    results = fit(recipe, registries)
    assert results["steps"] == 4
    assert 0.0 <= results["eval"]["knn_top1"] <= 1.0

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "checkpoints" / "step_000000004")
    (copy / "backbone.safetensors").unlink()
    resumed = recipes.validate(quickstart_with_kornia(str(copy), resume=True), registries)
    assert fit(resumed, registries)["steps"] == 4
    original, again = load_file(str(out / "backbone.safetensors")), load_file(str(copy / "backbone.safetensors"))
    for key in original:
        assert torch.equal(original[key], again[key]), key
