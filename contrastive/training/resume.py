"""``trainer.resume``: continue a run from its newest intact checkpoint.

* ``false`` — start fresh (an output directory holding checkpoints then needs ``overwrite``);
* ``true``  — continue the newest checkpoint that verifies, whatever the recipe says now (the
  user asked for it: e.g. more ``max_steps``); none at all -> start fresh, with a note;
* ``auto``  — the requeue setting: the same command line continues when the directory holds an
  intact checkpoint *of the same recipe* and starts fresh when it holds none.  A different
  recipe there is a one-line error naming the differing keys (`recipe_differences`);
  keys that do not change what is trained (`NOT_COMPARED`) may differ.

In every mode checkpoints that exist but none of which verifies stop the run (exit 2) rather
than silently starting over.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from contrastive.errors import RecipeError, TrainingError
from contrastive.recipe import flatten
from contrastive.storage import checkpoint
from contrastive.storage.run_dir import RunDir

if TYPE_CHECKING:
    from contrastive.training.build import Run

#: Recipe keys (dotted prefixes) that may differ between a run and its continuation: where and
#: how often it logs and saves, how it reports, and the evaluation after training.
NOT_COMPARED = (
    "trainer.resume", "trainer.overwrite", "trainer.output_dir", "trainer.progress", "trainer.log_every",
    "trainer.num_workers", "trainer.checkpoint_every", "trainer.checkpoint_every_steps", "trainer.keep_last",
    "trainer.speed_warmup_steps", "trainer.preempt_signals", "trainer.collective_timeout", "trainer.log_with",
    "trainer.project", "eval", "report", "plugins", "versions", "launch", "plan",
)


def _compared(key: str) -> bool:
    return not any(key == skip or key.startswith(skip + ".") for skip in NOT_COMPARED)


def recipe_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"key: saved -> current"`` for every compared leaf that differs (sorted by key)."""
    a, b = flatten(saved), flatten(current)
    missing = object()
    found = []
    for key in sorted(set(a) | set(b)):
        if _compared(key) and a.get(key, missing) != b.get(key, missing):
            show = [("(absent)" if v is missing else repr(v)) for v in (a.get(key, missing), b.get(key, missing))]
            found.append(f"{key}: {show[0]} -> {show[1]}")
    return found


def check_same_recipe(out: Path, recipe) -> None:
    """For ``resume: auto`` over existing checkpoints: the run in ``out`` is of this recipe."""
    import yaml

    from contrastive.recipe import yaml_values

    config = RunDir(out).config
    try:
        saved = yaml_values.load(config.read_text())
    except (OSError, yaml.YAMLError):
        return  # nothing to compare with: the checkpoint's own checks (model shape, steps) still apply
    if not isinstance(saved, dict):
        return
    differences = recipe_differences(saved, recipe.to_dict())
    if differences:
        shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
        raise RecipeError(
            f"trainer.output_dir '{out}' holds a run of a different recipe ({shown}); trainer.resume auto continues "
            f"only the same recipe: rerun that, continue anyway with --trainer.resume true, or pick a new --trainer.output_dir"
        )


def restore(run: Run) -> Path | None:
    """Load the newest checkpoint that verifies into ``run`` (when ``trainer.resume`` asks);
    returns its path, or None when the run starts fresh."""
    if not run.trainer.resume:
        return None
    accelerator, directory = run.accelerator, run.checkpoint_dir
    path, problems = checkpoint.newest_valid(directory)
    for problem in problems:
        accelerator.print(f"warning: skipping damaged checkpoint {problem}")
    if path is None and problems:
        raise TrainingError(
            f"no checkpoint in {directory} is intact ({'; '.join(problems)}); start over with "
            f"--trainer.overwrite true --trainer.resume false, or pick a new --trainer.output_dir"
        )
    if path is None:
        if run.trainer.resume is True or directory.exists():  # auto on an empty directory: nothing to say
            accelerator.print(f"no complete checkpoint in {directory}: starting from scratch")
        return None
    progress = checkpoint.load(
        path, model=run.method, optimizer=run.optimizer, scheduler=run.scheduler, scaler=accelerator.scaler,
        rank=accelerator.process_index, world_size=accelerator.num_processes,
    )
    if progress.get("steps_per_epoch") != run.state.steps_per_epoch:
        raise TrainingError(
            f"checkpoint {path} was written with {progress.get('steps_per_epoch')} steps per epoch, "
            f"this run has {run.state.steps_per_epoch}: resume with the same data, batch size, "
            f"trainer.accumulate and number of processes"
        )
    run.state.load_progress(progress)
    run.resumed_from = path  # the callbacks' states are loaded from it once they are built
    saved_readers, readers = progress.get("data_readers"), run.state.data_readers
    if saved_readers and readers and saved_readers != readers and run.state.batches_done:
        accelerator.print(
            f"warning: {path} was streamed by {saved_readers}, this run by {readers}: the rest of epoch "
            f"{run.state.epoch} is drawn from the new split, so some of its samples may be seen twice or not at all "
            f"(later epochs are whole); resume with the same --trainer.num_workers for an exact continuation")
    accelerator.print(f"resumed from {path} (epoch {run.state.epoch}, step {run.state.global_step})")
    return path
