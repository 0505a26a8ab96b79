"""A run's output directory: created and probed on every process, then claimed (the lock)
with the verdict on the checkpoints already in it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from contrastive.errors import ContrastiveError, RecipeError
from contrastive.recipe import Recipe, TrainerConfig
from contrastive.storage import checkpoint
from contrastive.storage.run_dir import RunDir
from contrastive.storage.run_lock import RunLock
from contrastive.training.resume import check_same_recipe

if TYPE_CHECKING:
    from accelerate import Accelerator


def make_output_dir(trainer: TrainerConfig) -> Path:
    """Create (and probe) ``trainer.output_dir`` on every process; nothing in it is touched."""
    out = Path(trainer.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = RunDir(out).write_probe()  # one per process: every rank checks
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise RecipeError(
            f"trainer.output_dir '{out}' cannot be created or written ({exc.strerror or exc}); "
            f"choose another with --trainer.output_dir PATH"
        ) from exc
    return out


def claim_output_dir(recipe: Recipe, out: Path, accelerator: Accelerator) -> RunLock | None:
    """Take ``out``'s lock (main process) and decide what happens to the checkpoints in it
    before anything is written: refuse to mix a new run into an old one's checkpoints, remove
    them for ``overwrite``, and for ``resume: auto`` check that they are of this recipe.  Every
    process gets the same verdict (one collective); the main process returns the held lock."""
    from accelerate.utils import broadcast_object_list

    trainer = recipe.trainer
    lock, problem = None, None
    if accelerator.is_main_process:
        try:
            lock = RunLock(out)
            note = lock.acquire()
            if note:
                print(note)
            if checkpoint.complete(RunDir(out).checkpoints):
                if trainer.resume == "auto":
                    check_same_recipe(out, recipe)
                elif not trainer.resume and not trainer.overwrite:
                    raise RecipeError(
                        f"trainer.output_dir '{out}' already holds a run's checkpoints; continue it with "
                        f"--trainer.resume auto, start over with --trainer.overwrite true, or pick a new --trainer.output_dir"
                    )
                elif not trainer.resume:
                    import shutil

                    shutil.rmtree(RunDir(out).checkpoints, ignore_errors=True)
        except ContrastiveError as exc:
            problem = str(exc)
            if lock is not None:
                lock.release()
    problem = broadcast_object_list([problem])[0]
    if problem:
        raise RecipeError(problem)
    return lock
