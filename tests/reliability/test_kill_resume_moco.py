"""SIGKILL a real MoCo run mid-training and resume: the same final weights, momentum encoder and
queue as an uninterrupted run, bit for bit (the queue is part filled at the kill)."""

from __future__ import annotations

from safetensors.torch import load_file

from .conftest import assert_same_tensors, kill_after_step_4_then_resume, kill_recipe

# 90 digits in steps of 16: 5 steps an epoch, 80 keys an epoch; checkpoints every 3 steps and every epoch
MOCO = {"name": "moco", "args": {"queue_size": 64, "momentum": 0.9}}


def moco_recipe(out):
    recipe = kill_recipe(out)
    recipe["method"] = MOCO
    del recipe["loss"]
    return recipe


def test_sigkill_during_a_moco_run_then_resume_is_exact(tmp_path):
    # killed after step 4: the step-3 checkpoint holds the queue 48 of 64 filled
    reference, out = kill_after_step_4_then_resume(tmp_path, moco_recipe)
    final = "checkpoints/step_000000010"
    state = load_file(str(out / final / "model.safetensors"))
    assert {"queue.keys", "queue.pointer", "queue.filled"} <= set(state) and any(k.startswith("key_encoder.") for k in state)
    assert_same_tensors(reference / final / "model.safetensors", out / final / "model.safetensors")
    assert_same_tensors(reference / "backbone.safetensors", out / "backbone.safetensors")
