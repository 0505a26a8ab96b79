"""SIGKILL a real MoCo run mid-training and resume: the same final weights, momentum encoder and
queue as an uninterrupted run, bit for bit (the queue is part filled at the kill)."""

from __future__ import annotations

from safetensors.torch import load_file

from contrastive import checkpoint

from .conftest import (
    assert_same_tensors,
    child_env,
    kill_recipe,
    kill_when,
    logged_steps,
    run_fit,
    start_fit,
    write_recipe,
)

# 90 digits in steps of 16: 5 steps an epoch, 80 keys an epoch; checkpoints every 3 steps and every epoch
MOCO = {"name": "moco", "args": {"queue_size": 64, "momentum": 0.9}}


def moco_recipe(out):
    recipe = kill_recipe(out)
    recipe["method"] = MOCO
    del recipe["loss"]
    return recipe


def test_sigkill_during_a_moco_run_then_resume_is_exact(tmp_path):
    reference = tmp_path / "reference"
    done = run_fit(write_recipe(tmp_path / "reference.yaml", moco_recipe(reference)))
    assert done.returncode == 0, done.stderr

    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "recipe.yaml", moco_recipe(out))
    marker = tmp_path / "paused"
    # killed after step 4 is logged (the step-3 checkpoint, queue 48 of 64 filled, is complete);
    # the pause in the step-6 save keeps the run from finishing before the kill arrives
    first = start_fit(recipe, tmp_path / "first.log", env=child_env(**{checkpoint.PAUSE_ENV: f"6:{marker}"}))
    kill_when(first, lambda: 4 in logged_steps(out))
    assert checkpoint.complete(out / "checkpoints"), "a complete checkpoint exists before the kill"

    resumed = run_fit(recipe, "--trainer.resume", "true")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout + resumed.stderr
    final = "checkpoints/step_000000010"
    state = load_file(str(out / final / "model.safetensors"))
    assert {"queue.keys", "queue.pointer", "queue.filled"} <= set(state) and any(k.startswith("key_encoder.") for k in state)
    assert_same_tensors(reference / final / "model.safetensors", out / final / "model.safetensors")
    assert_same_tensors(reference / "backbone.safetensors", out / "backbone.safetensors")
