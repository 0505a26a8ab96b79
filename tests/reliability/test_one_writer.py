"""One writer per run directory, and safe readers, with a real ``contrastive fit`` running."""

from __future__ import annotations

import signal
import subprocess
import sys

from contrastive.storage import checkpoint

from .conftest import child_env, fit_command, kill_recipe, logged_steps, start_fit, write_recipe
from .test_preemption import wait_for


def test_a_second_fit_into_a_directory_being_trained_exits_2_and_eval_reads_the_newest_checkpoint(tmp_path):
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "recipe.yaml", kill_recipe(out, max_epochs=1000))
    first = start_fit(recipe, tmp_path / "first.log")
    try:
        wait_for(first, lambda: 4 in logged_steps(out))  # checkpoint 3 is written before step 4's record
        before = [p.name for p in checkpoint.complete(out / "checkpoints")]

        second = subprocess.run(fit_command(recipe, "--trainer.overwrite", "true"), env=child_env(),
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "is being written by another run" in lines[0] and f"pid {first.pid}" in lines[0], second.stderr
        after = [p.name for p in checkpoint.complete(out / "checkpoints")]
        assert after and after[-1] >= before[-1]  # overwrite did not clear the other run's checkpoints
        now = max(logged_steps(out))
        wait_for(first, lambda: now + 1 in logged_steps(out))  # and that run goes on

        evaluated = subprocess.run([sys.executable, "-m", "contrastive", "eval", str(out), "--protocol", "knn"],
                                   env=child_env(), capture_output=True, text=True, timeout=180)
        assert evaluated.returncode == 0, evaluated.stderr
        assert "is still training" in evaluated.stderr and "newest complete checkpoint" in evaluated.stderr
        assert "knn" in evaluated.stdout.lower()
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    assert first.returncode == 143
