"""Preemption: a scheduler's signal makes ``contrastive fit`` save, leave with 128 + signal, and
the same command line with ``--trainer.resume auto`` finish with the uninterrupted run's weights.

Real subprocesses of the tiny recipe (5 steps per epoch, 10 steps; the reference run of
conftest checkpoints at steps 3, 5, 6, 9, 10).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from contrastive.storage import checkpoint

from .conftest import (
    assert_same_tensors,
    child_env,
    fit_command,
    kill_recipe,
    logged_steps,
    run_fit,
    start_fit,
    write_recipe,
)

AUTO = ("--trainer.resume", "auto")


def wait_for(proc, condition, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) too early"
        assert time.monotonic() < deadline, "the condition never came"
        time.sleep(0.02)


def test_sigterm_saves_exits_143_and_the_same_command_finishes_bit_exact(reference_run, tmp_path):
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "recipe.yaml", kill_recipe(out))
    log = tmp_path / "first.log"
    first = start_fit(recipe, log, *AUTO)
    wait_for(first, lambda: 7 in logged_steps(out))
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 143
    text = log.read_text()
    stopped = [line for line in text.splitlines() if line.startswith("stopped by SIGTERM after step")]
    assert len(stopped) == 1 and "--trainer.resume auto" in stopped[0], text
    step = int(stopped[0].split("after step ")[1].split()[0])
    assert 7 <= step < 10
    newest = checkpoint.complete(out / "checkpoints")[-1]
    assert newest.name == f"step_{step:09d}" and checkpoint.verify(newest) is None
    assert "Traceback" not in text

    second = run_fit(recipe, *AUTO)  # the requeued job: the same command line
    assert second.returncode == 0, second.stderr
    assert f"resumed from {newest}" in second.stdout + second.stderr
    final = "step_000000010"
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert_same_tensors(reference_run / "checkpoints" / final / name, out / "checkpoints" / final / name)
    assert_same_tensors(reference_run / "backbone.safetensors", out / "backbone.safetensors")
    assert logged_steps(out) == list(range(1, 11))  # each step once


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGUSR1, 138)])
def test_ctrl_c_and_sigusr1_save_and_say_how_to_resume(tmp_path, sig, status):
    """Ctrl-C as a terminal sends it: SIGINT to the whole process group, DataLoader workers
    included (they leave the decision to the main process: one message, one save)."""
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "recipe.yaml", kill_recipe(out, max_epochs=1000, num_workers=2))
    log = tmp_path / "run.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen(fit_command(recipe), env=child_env(), stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)
    wait_for(proc, lambda: 2 in logged_steps(out))
    os.killpg(proc.pid, sig)
    assert proc.wait(timeout=120) == status
    text = log.read_text()
    assert text.count(f"{sig.name}: finishing this step") == 1, text
    stopped = [line for line in text.splitlines() if line.startswith(f"stopped by {sig.name}")]
    assert len(stopped) == 1 and "--trainer.resume auto" in stopped[0], text
    assert checkpoint.newest_valid(out / "checkpoints")[0] is not None
    assert "Traceback" not in text


def test_a_second_signal_exits_at_once_and_the_newest_checkpoint_verifies(tmp_path):
    """The first SIGTERM comes while checkpoint 6 is half-written (the save is held there by the
    fault-injection hook), the second one ends the process at once: step 5's checkpoint is
    the newest complete one and verifies."""
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "recipe.yaml", kill_recipe(out))
    marker = tmp_path / "paused"
    proc = start_fit(recipe, tmp_path / "run.log", env=child_env(**{checkpoint.PAUSE_ENV: f"6:{marker}"}))
    wait_for(proc, marker.exists)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.poll() is None  # the first signal waits for the step (here: the save) to finish
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert "SIGTERM again: exiting now" in (tmp_path / "run.log").read_text()
    path, problems = checkpoint.newest_valid(out / "checkpoints")
    assert path is not None and path.name == "step_000000005" and not problems
