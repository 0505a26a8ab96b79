"""A process lost in a 2-process CPU run (gloo): the other ends within a bounded time with one
line naming the lost rank, and restarting both continues bit-exactly."""

from __future__ import annotations

import time

from tests.helpers import run_ranks, start_ranks

from .conftest import assert_same_tensors, kill_recipe, logged_steps, write_recipe
from .test_preemption import wait_for


def test_sigkill_of_one_rank_ends_the_other_naming_it_and_both_resume_exactly(tmp_path):
    # 90 images, 2 processes x batch 16: 2 steps an epoch, 16 steps, checkpoints every 3 steps
    reference = tmp_path / "reference"
    code, output = run_ranks(["fit", "--recipe", str(write_recipe(tmp_path / "reference.yaml",
                                                                    kill_recipe(reference, max_epochs=8)))])
    assert code == 0, output[-3000:]

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
