"""SIGKILL a real DINO run mid-training and resume: the same final state as an uninterrupted run,
bit for bit — student, teacher, centre and step counter (the teacher temperature's clock) — while
the run is still in its frozen-last-layer epoch and its teacher-temperature warm-up at the kill.

Multi-crop (2 global views at 16 px, 2 local at 8 px), the ``dino`` head; 90 digits in steps of
16: 5 steps an epoch, 10 in all, checkpoints at steps 3, 5, 6, 9 and 10.  The uninterrupted run
also shows the freeze in a real fit: the last layer is the same at steps 3 and 5 (the first
epoch) and moves at step 6."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from .conftest import assert_same_tensors, kill_after_step_4_then_resume, kill_recipe

LAST_LAYER = "head.last_layer.parametrizations.weight.original1"


def recipe_of(out):
    recipe = kill_recipe(out)
    del recipe["loss"]
    augmentation = recipe.pop("augmentation")
    local = [{"name": "random_resized_crop", "args": {"size": 8, "scale": [0.1, 0.4]}}, *augmentation[1:]]
    recipe["views"] = [{"count": 2, "augmentation": augmentation}, {"count": 2, "augmentation": local}]
    recipe["method"] = {"name": "dino", "args": {"warmup_teacher_temperature_epochs": 1, "momentum": 0.9}}
    recipe["head"] = {"name": "dino", "args": {"hidden_dim": 32, "bottleneck_dim": 16, "out_dim": 64}}
    return recipe


def test_sigkill_then_resume_is_exact_and_the_last_layer_waits_an_epoch(tmp_path):
    reference, out = kill_after_step_4_then_resume(tmp_path, recipe_of)
    final = "checkpoints/step_000000010"
    state = load_file(str(out / final / "model.safetensors"))
    assert {"center", "last_step"} <= set(state) and any(k.startswith("teacher.") for k in state)
    assert int(state["last_step"]) == 10 and float(state["center"].abs().max()) > 0
    assert_same_tensors(reference / final / "model.safetensors", out / final / "model.safetensors")
    assert_same_tensors(reference / "backbone.safetensors", out / "backbone.safetensors")

    def at(step: int) -> dict[str, torch.Tensor]:
        return load_file(str(reference / "checkpoints" / f"step_{step:09d}" / "model.safetensors"))

    assert torch.equal(at(3)[LAST_LAYER], at(5)[LAST_LAYER])
    assert not torch.equal(at(5)[LAST_LAYER], at(6)[LAST_LAYER])
    assert not torch.equal(at(3)["head.mlp.0.weight"], at(5)["head.mlp.0.weight"])
