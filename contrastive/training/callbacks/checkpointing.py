"""Periodic checkpoints (the format is `contrastive.storage.checkpoint`; resuming is
`contrastive.training.resume`, done when the run is built).

Policy: every ``checkpoint_every`` epochs (at the epoch's end), every ``checkpoint_every_steps``
steps (mid-epoch), when a preemption signal stops the run, and at the end of the run; ``keep_last`` complete ones are kept.  The
method's whole ``state_dict`` is saved — backbone, heads, and any buffer it keeps (queues,
counters) — with the optimiser, scheduler, fp16 scaler, progress, every process's RNG state and
the state of the online linear probe and of the recipe's callbacks (``state_dict``, the main process's).

The policy decides in this callback's place in the order; the save itself comes after every
callback of that step or epoch end ran ([`Checkpointing.save_if_due`][contrastive.training.callbacks.checkpointing.Checkpointing.save_if_due], called by the loop),
so a checkpoint holds every callback's state after its step.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from contrastive.storage import checkpoint
from contrastive.training.callbacks.base import Callback

if TYPE_CHECKING:
    from contrastive.training.build import Run


class Checkpointing(Callback):
    """Atomic checkpoints at the policy's points."""

    def __init__(self, every_epochs: int = 1, every_steps: int | None = None, keep_last: int = 2) -> None:
        self.every_epochs = every_epochs
        self.every_steps = every_steps
        self.keep_last = keep_last
        self.last_saved: Path | None = None
        self._unsaved = False  # a step ran since the last save
        self._due = False  # a save is due once every callback of this step or epoch end has run
        self.states = dict  # the user callbacks' states to save (set by build_callbacks)

    def save(self, run: Run) -> Path | None:
        """Write a checkpoint of the run as it stands (a collective: every process calls it)."""
        from accelerate.utils import gather_object

        rng_states = gather_object([checkpoint.capture_rng()])
        saved = None
        if run.main:
            saved = checkpoint.save(
                run.checkpoint_dir, model=run.method, optimizer=run.optimizer, scheduler=run.scheduler,
                scaler=run.accelerator.scaler, rng_states=rng_states, keep_last=self.keep_last,
                progress=run.state.to_progress(), callbacks=self.states(),
            )
        run.accelerator.wait_for_everyone()
        self.last_saved, self._unsaved = saved, False
        return saved

    def on_step_end(self, run: Run, result) -> None:
        self._unsaved = True
        self._due = bool(self.every_steps and run.state.global_step % self.every_steps == 0)

    def on_epoch_end(self, run: Run) -> None:
        self._due = run.state.done or bool(self.every_epochs and run.state.epoch % self.every_epochs == 0)

    def save_if_due(self, run: Run) -> None:
        """Save when the policy asked at this step or epoch end; the loop calls it after every
        callback ran, so that the checkpoint holds their state after this step."""
        if self._due:
            self._due = False
            self.save(run)

    def on_fit_end(self, run: Run) -> None:
        if self._unsaved:  # the run ended mid-epoch (max_steps)
            self.save(run)

    def on_preempted(self, run: Run) -> None:
        if self._unsaved:
            self.save(run)
