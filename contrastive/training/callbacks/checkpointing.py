"""Periodic checkpoints (the format is :mod:`contrastive.checkpoint`; resuming is
:mod:`contrastive.training.resume`, done when the run is built).

Policy: every ``checkpoint_every`` epochs (at the epoch's end), every ``checkpoint_every_steps``
steps (mid-epoch), when a preemption signal stops the run, and at the end of the run; ``keep_last`` complete ones are kept.  The
method's whole ``state_dict`` is saved — backbone, heads, and any buffer it keeps (queues,
counters) — with the optimiser, scheduler, fp16 scaler, progress and every process's RNG state.
"""

from __future__ import annotations

from pathlib import Path

from contrastive import checkpoint
from contrastive.training.callbacks.base import Callback


class Checkpointing(Callback):
    """Atomic checkpoints at the policy's points."""

    def __init__(self, every_epochs: int = 1, every_steps: int | None = None, keep_last: int = 2) -> None:
        self.every_epochs = every_epochs
        self.every_steps = every_steps
        self.keep_last = keep_last
        self.last_saved: Path | None = None
        self._unsaved = False  # a step ran since the last save

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

    def on_preempted(self, run) -> None:
        if self._unsaved:
            self.save(run)
