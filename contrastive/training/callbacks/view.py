"""What a callback named in the recipe sees of the run: [`RunView`][contrastive.training.callbacks.view.RunView] and its [`MetricsWriter`][contrastive.training.callbacks.view.MetricsWriter].

The view is read-mostly: counters, the model, the accelerator and the output directory to read;
two ways to act — write metrics (`RunView.metrics`) and ask the loop to stop
([`RunView.request_stop`][contrastive.training.callbacks.view.RunView.request_stop]).  It is the same object for the whole run, on every process.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contrastive.training.build import Run


class MetricsWriter:
    """Writes records to ``metrics.jsonl`` (main process) and the run's tracker (TensorBoard, W&B...).

    [`log`][contrastive.training.callbacks.view.MetricsWriter.log] adds the current ``step`` and ``epoch`` to the values, as every record of the
    run has them.  [`latest`][contrastive.training.callbacks.view.MetricsWriter.latest] gives the newest value logged under a key by anything in the
    run (the loss every ``trainer.log_every`` steps, ``knn_top1`` of the online kNN, the
    method's diagnostics, other callbacks' values) and the step it was logged at.
    """

    def __init__(self, logging, state) -> None:
        self._logging, self._state = logging, state

    def log(self, values: dict[str, float], *, show: str | None = None) -> None:
        """Log ``values`` (``{name: number}``) at the current step; ``show``: also print this line
        (main process).  Call it on every process: only the main one writes."""
        reserved = {"step", "epoch"} & set(values)
        if reserved:
            raise ValueError(f"metrics.log: '{sorted(reserved)[0]}' is added by the writer; leave it out of the values")
        self._logging.write({"step": self._state.global_step, "epoch": self._state.epoch, **values}, show=show)

    def latest(self, key: str) -> tuple[int, float] | None:
        """``(step, value)`` of the newest record holding ``key`` in this session, None before one.
        On the main process this includes what only it computes (the online kNN's ``knn_top1``)."""
        return self._logging.latest.get(key)


class RunView:
    """The run as a recipe-named callback sees it ([`contrastive.training.callbacks`][contrastive.training.callbacks]).

    Counters are read at the moment of the call: in ``on_step_end`` [`step`][contrastive.training.callbacks.view.RunView.step] is the step just
    taken (1-based) and `result` its `StepResult`
    (``loss``, a float averaged over processes; ``logs``, the method's diagnostics; ``applied``);
    in ``on_epoch_end`` [`epoch`][contrastive.training.callbacks.view.RunView.epoch] is the number of epochs finished.  Every process calls
    every hook: write files only where [`main`][contrastive.training.callbacks.view.RunView.main] is true.
    """

    def __init__(self, run: Run, metrics: MetricsWriter) -> None:
        self._run = run
        self.metrics = metrics
        self.result = None  # the latest StepResult (None before the first step of this session)
        self.stop_reason: str | None = None

    @property
    def step(self) -> int:
        """Optimiser steps taken so far (counting those before a resume)."""
        return self._run.state.global_step

    @property
    def epoch(self) -> int:
        """Epochs finished so far (the epoch being trained, counted from 0)."""
        return self._run.state.epoch

    @property
    def total_steps(self) -> int:
        """Steps the run takes unless stopped early (``trainer.max_epochs``, ``trainer.max_steps``)."""
        return self._run.state.total_steps

    @property
    def steps_per_epoch(self) -> int:
        return self._run.state.steps_per_epoch

    @property
    def method(self):
        """The training method (`contrastive.Method`, unwrapped from DDP)."""
        return self._run.method

    @property
    def backbone(self):
        """The method's backbone: ``(B, C, H, W) -> (B, num_features)``."""
        return self._run.method.backbone

    @property
    def accelerator(self):
        """The run's ``accelerate.Accelerator`` (device, processes, ``gather``, ``wait_for_everyone``)."""
        return self._run.accelerator

    @property
    def device(self):
        return self._run.accelerator.device

    @property
    def main(self) -> bool:
        """Whether this is the process that writes files."""
        return self._run.accelerator.is_main_process

    @property
    def out(self) -> Path:
        """The run's output directory (``trainer.output_dir``)."""
        return self._run.out

    @property
    def recipe(self) -> Any:
        """The validated recipe (read it, never change it)."""
        return self._run.recipe

    def request_stop(self, reason: str) -> None:
        """Ask the loop to end the run after this step (or epoch end).  The processes agree: if any
        asks, every one stops after the same step; the run then ends as a finished one (final
        checkpoint, ``results.json`` with ``stopped_early``, evaluation) and a resume does not
        train further.  ``reason`` is printed."""
        if self.stop_reason is None:
            self.stop_reason = reason

    @property
    def stop_requested(self) -> bool:
        return self.stop_reason is not None
