"""Faults of a 2-process CPU run (gloo).  A process lost: the other ends within a bounded time
with one line naming the lost rank.  A preemption signal to one process: both stop at the same
step after one checkpoint, exit 143.  Either way, restarting both continues bit-exactly."""

from __future__ import annotations

import signal
import time

import pytest

from tests.helpers import run_ranks, start_ranks

from .conftest import assert_same_tensors, kill_recipe, logged_steps, write_recipe
from .test_preemption import wait_for


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted 2-process run: 90 images, batch 16 a process, 2 steps an epoch, 16 steps."""
    out = tmp_path_factory.mktemp("two_process_reference")
    code, output = run_ranks(["fit", "--recipe", str(write_recipe(out.parent / "two_reference.yaml",
                                                                    kill_recipe(out, max_epochs=8)))])
    assert code == 0, output[-3000:]
    return out


def test_sigkill_of_one_rank_ends_the_other_naming_it_and_both_resume_exactly(reference, tmp_path):
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "recipe.yaml", kill_recipe(out, max_epochs=8))
    args = ["fit", "--recipe", str(recipe), "--trainer.resume", "auto"]
    rank0, rank1 = start_ranks(args, logs=[tmp_path / "rank0.log", tmp_path / "rank1.log"])
    wait_for(rank0, lambda: 5 in logged_steps(out))
    rank1.kill()
    killed = time.monotonic()
    rank0.wait(timeout=120)
    waited = time.monotonic() - killed
    assert rank0.returncode == 2, (tmp_path / "rank0.log").read_text()[-3000:]
    errors = [line for line in (tmp_path / "rank0.log").read_text().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "lost contact with the other processes" in errors[0], errors
    assert f"rank 1 (pid {rank1.pid}) exited" in errors[0] and "--trainer.resume auto" in errors[0]
    assert waited < 60, waited  # far below the collective timeout: gloo sees the closed connection

    code, output = run_ranks(args)  # the same command for both processes, after the fault
    assert code == 0, output[-3000:]
    assert "resumed from" in output
    assert_same_tensors(reference / "backbone.safetensors", out / "backbone.safetensors")
    assert logged_steps(out) == list(range(1, 17))


def test_sigterm_to_one_rank_stops_both_at_the_same_step_and_both_resume_exactly(reference, tmp_path):
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "recipe.yaml", kill_recipe(out, max_epochs=8))
    args = ["fit", "--recipe", str(recipe), "--trainer.resume", "auto"]
    logs = [tmp_path / "rank0.log", tmp_path / "rank1.log"]
    rank0, rank1 = start_ranks(args, logs=logs)
    wait_for(rank0, lambda: 5 in logged_steps(out))
    rank1.send_signal(signal.SIGTERM)  # only rank 1 is told
    assert rank1.wait(timeout=120) == 143 and rank0.wait(timeout=120) == 143, [p.read_text()[-2000:] for p in logs]
    stopped = logs[0].read_text().split("stopped by SIGTERM after step ")[1].split()[0]
    assert logs[1].read_text().split("stopped by SIGTERM after step ")[1].split()[0] == stopped  # the same step
    code, output = run_ranks(args)
    assert code == 0, output[-3000:]
    assert f"step_{int(stopped):09d}" in output  # resumed from the preemption checkpoint
    assert_same_tensors(reference / "backbone.safetensors", out / "backbone.safetensors")
    assert logged_steps(out) == list(range(1, 17))
