"""Resume and periodic checkpoints (the format is :mod:`contrastive.checkpoint`).

Policy: every ``checkpoint_every`` epochs (at the epoch's end), every ``checkpoint_every_steps``
steps (mid-epoch), and at the end of the run; ``keep_last`` complete ones are kept.  The
method's whole ``state_dict`` is saved — backbone, heads, and any buffer it keeps (queues,
counters) — with the optimiser, scheduler, fp16 scaler, progress and every process's RNG state.
"""

from __future__ import annotations

from pathlib import Path

from contrastive import checkpoint
from contrastive.errors import TrainingError
from contrastive.training.callbacks.base import Callback


class Checkpointing(Callback):
    """``trainer.resume`` at the start; atomic checkpoints at the policy's points."""

    def __init__(self, every_epochs: int = 1, every_steps: int | None = None, keep_last: int = 2) -> None:
        self.every_epochs = every_epochs
        self.every_steps = every_steps
        self.keep_last = keep_last
        self.last_saved: Path | None = None
        self._unsaved = False  # a step ran since the last save

    def on_fit_start(self, run) -> None:
        if run.trainer.resume:
            self.resume(run)

    def resume(self, run) -> None:
        """Load the newest checkpoint that verifies into the run (or start from scratch)."""
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
            accelerator.print(f"no complete checkpoint in {directory}: starting from scratch")
            return
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
        accelerator.print(f"resumed from {path} (epoch {run.state.epoch}, step {run.state.global_step})")

    def save(self, run) -> Path | None:
        """Write a checkpoint of the run as it stands (a collective: every process calls it)."""
        from accelerate.utils import gather_object

        rng_states = gather_object([checkpoint.capture_rng()])
        saved = None
        if run.main:
            saved = checkpoint.save(
                run.checkpoint_dir, model=run.method, optimizer=run.optimizer, scheduler=run.scheduler,
                scaler=run.accelerator.scaler, rng_states=rng_states, keep_last=self.keep_last,
                progress=run.state.to_progress(),
            )
        run.accelerator.wait_for_everyone()
        self.last_saved, self._unsaved = saved, False
        return saved

    def on_step_end(self, run, result) -> None:
        self._unsaved = True
        if self.every_steps and run.state.global_step % self.every_steps == 0:
            self.save(run)

    def on_epoch_end(self, run) -> None:
        if run.state.done or (self.every_epochs and run.state.epoch % self.every_epochs == 0):
            self.save(run)

    def on_fit_end(self, run) -> None:
        if self._unsaved:  # the run ended mid-epoch (max_steps)
            self.save(run)
