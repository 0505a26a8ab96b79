"""Where a run stands: the counters the loop advances and checkpoints restore."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def is_record_step(step: int, total_steps: int, every: int) -> bool:
    """Whether step ``step`` (1-based) of ``total_steps`` is recorded: every ``every`` steps and the last."""
    return step % every == 0 or step == total_steps


@dataclass
class TrainState:
    """Progress of a run, in optimiser steps and epochs.

    ``global_step`` counts steps taken (applied or skipped), ``batches_done`` the steps of the
    current ``epoch``.  `to_progress` / `from_progress` give the ``progress`` record
    of a checkpoint (its keys are the checkpoint format: keep them).
    """

    steps_per_epoch: int
    total_steps: int
    max_epochs: int
    global_step: int = 0
    epoch: int = 0
    batches_done: int = 0
    nonfinite_skipped: int = 0  # trainer.skip_nonfinite: steps skipped for a non-finite loss
    amp_skipped: int = 0  # steps the fp16 gradient scaler skipped (overflow; not a failure)
    # a stream's readers ("2 processes x 4 workers"): which samples an epoch's batches hold depends on it
    data_readers: str | None = None
    stopped_early: bool = False  # a callback asked to stop (RunView.request_stop): the run is finished


    @property
    def done(self) -> bool:
        return self.stopped_early or self.global_step >= self.total_steps or self.epoch >= self.max_epochs

    @property
    def epoch_finished(self) -> bool:
        return self.batches_done >= self.steps_per_epoch

    def advance(self) -> None:
        """One step taken."""
        self.global_step += 1
        self.batches_done += 1

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batches_done = 0

    def to_progress(self) -> dict[str, Any]:
        progress = {
            "global_step": self.global_step,
            "epoch": self.epoch,
            "batches_done_in_epoch": self.batches_done,
            "steps_per_epoch": self.steps_per_epoch,
            "nonfinite_skipped": self.nonfinite_skipped,
            "amp_skipped_steps": self.amp_skipped,
        }
        if self.data_readers is not None:
            progress["data_readers"] = self.data_readers
        if self.stopped_early:
            progress["stopped_early"] = True
        return progress

    def load_progress(self, progress: dict[str, Any]) -> None:
        self.global_step = int(progress["global_step"])
        self.epoch = int(progress["epoch"])
        self.batches_done = int(progress["batches_done_in_epoch"])
        self.nonfinite_skipped = int(progress.get("nonfinite_skipped", 0))
        self.amp_skipped = int(progress.get("amp_skipped_steps", 0))
        self.stopped_early = bool(progress.get("stopped_early", False))
