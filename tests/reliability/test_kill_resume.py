"""SIGKILL a real ``contrastive fit`` at several points, resume, and get the same model bit for bit.

One chain of runs on the tiny recipe (5 steps per epoch, checkpoints every 3 steps and every
epoch: steps 3, 5, 6, 9, 10):

1. killed inside the checkpoint write of step 6 (the model is in the temporary directory, the
   rest is not) -> the newest complete checkpoint is step 5, an epoch boundary;
2. resumed from step 5, killed during a training step once step 7 is logged -> the newest
   complete checkpoint is step 6, one batch into the second epoch (mid-epoch);
3. resumed from there to the end.

The final model and optimizer state equal the uninterrupted reference run's exactly.
"""

from __future__ import annotations

import re

from contrastive.storage import checkpoint

from .conftest import (
    assert_same_tensors,
    child_env,
    kill_recipe,
    kill_when,
    logged_steps,
    run_fit,
    start_fit,
    tensorboard_steps,
    write_recipe,
)


def test_kill_during_checkpoint_write_and_during_step_then_exact_resume(reference_run, tmp_path):
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "recipe.yaml", kill_recipe(out))
    ckpts = out / "checkpoints"

    # 1. killed inside checkpoint.save(step 6)
    marker = tmp_path / "paused"
    env = child_env(**{checkpoint.PAUSE_ENV: f"6:{marker}"})
    first = start_fit(recipe, tmp_path / "first.log", env=env)
    kill_when(first, marker.exists)
    assert [p.name for p in checkpoint.complete(ckpts)] == ["step_000000003", "step_000000005"]
    assert list(ckpts.glob(".tmp-*")), "the half-written checkpoint should be under its temporary name"

    # 2. resumed (from the epoch checkpoint), killed during a step after step 7 was logged
    second = start_fit(recipe, tmp_path / "second.log", "--trainer.resume", "true")
    kill_when(second, lambda: 7 in logged_steps(out))
    log = (tmp_path / "second.log").read_text()
    assert "resumed from" in log and "step 5)" in log, log
    newest = checkpoint.complete(ckpts)[-1].name
    assert newest in ("step_000000006", "step_000000009"), newest  # 9 only if the kill came late

    # 3. resumed (mid-epoch) to the end
    third = run_fit(recipe, "--trainer.resume", "true")
    assert third.returncode == 0, third.stderr
    resumed = re.search(r"resumed from .*step_(\d+)", third.stdout + third.stderr)
    assert resumed and int(resumed.group(1)) == int(newest[len("step_") :])
    assert not list(ckpts.glob(".tmp-*")), "stale temporary directories are cleaned up by the next save"
    # two kills, two resumes: every step's record once, in metrics.jsonl and on TensorBoard's axis
    assert logged_steps(out) == list(range(1, 11))
    assert tensorboard_steps(out) == list(range(1, 11))

    final = "step_000000010"
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert_same_tensors(reference_run / "checkpoints" / final / name, ckpts / final / name)
    assert_same_tensors(reference_run / "backbone.safetensors", out / "backbone.safetensors")
    assert (reference_run / "checkpoints" / final / "optimizer.json").read_text() == (
        ckpts / final / "optimizer.json"
    ).read_text()

