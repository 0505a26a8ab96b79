"""SIGKILL a real BYOL and a real SimSiam run mid-training and resume: the same final weights
(BYOL's momentum target included) as an uninterrupted run, bit for bit.  BYOL's target follows
a cosine momentum schedule derived from the step; SimSiam's predictor trains in its own
optimizer group whose lr the scheduler keeps fixed (a pinned multiplier in the scheduler's state)."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from .conftest import assert_same_tensors, kill_after_step_4_then_resume, kill_recipe

# 90 digits in steps of 16: 5 steps an epoch, 10 in all; checkpoints every 3 steps and every epoch
METHODS = {
    "byol": ({"name": "byol", "args": {"momentum": 0.9}}, "target."),
    "simsiam": ({"name": "simsiam", "args": {"fix_predictor_lr": True}}, "predictor."),
}


def recipe_of(name: str, out):
    recipe = kill_recipe(out)
    recipe["method"] = METHODS[name][0]
    recipe["predictor"] = {"name": "mlp", "args": {"hidden_dim": 8, "out_dim": 16}}
    del recipe["loss"]
    return recipe


@pytest.mark.parametrize("name", sorted(METHODS))
def test_sigkill_then_resume_is_exact(name, tmp_path):
    reference, out = kill_after_step_4_then_resume(tmp_path, lambda directory: recipe_of(name, directory))
    final = "checkpoints/step_000000010"
    state = load_file(str(out / final / "model.safetensors"))
    assert any(k.startswith(METHODS[name][1]) for k in state)
    assert_same_tensors(reference / final / "model.safetensors", out / final / "model.safetensors")
    assert_same_tensors(reference / "backbone.safetensors", out / "backbone.safetensors")
