"""The training loop: ``fit(recipe)``, short on purpose.

Per optimiser step the loop draws a batch, sets the recipe's scheduled values of the step
(`contrastive.training.scheduled`), lets `train_step`
make the views and run the method's ``forward`` and ``loss`` (GradCache over
``trainer.accumulate`` chunks), the guard and the update, calls the method's ``after_step``
when the update was applied (after clamping learned values to their bounds), and hands the result to the callbacks
([`contrastive.training.callbacks`][contrastive.training.callbacks]: logging, checkpoints, the online kNN, the run record
with the final evaluation), in their written-down order.  After each step every process asks
whether a preemption signal came (`contrastive.training.preemption`) or a callback asked
to stop (the same collective); then the checkpoint due is saved, holding every callback's state
after the step.  A signal saves and stops the run (exit 128 + signal); a stop request ends it as
a finished run.  The loop imports no method.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from contrastive.recipe import Recipe
from contrastive.training.build import build_run
from contrastive.training.callbacks import Checkpointing, RunRecord, build_callbacks
from contrastive.training.faults import lost_processes_are_errors, stopped_by
from contrastive.training.preemption import Preemption
from contrastive.training.step import NonFiniteGuard, train_step

if TYPE_CHECKING:
    from contrastive.registry import Registries
    from contrastive.training.build import Run


def fit(recipe: Recipe, registries: Registries) -> dict[str, Any]:
    """Train ``recipe``; returns what ``results.json`` holds (an empty dict on other processes)."""
    preemption = Preemption(recipe.trainer.preempt_signals).install()
    try:
        run = build_run(recipe, registries)
        with lost_processes_are_errors(run):
            return _train(run, preemption)
    finally:
        preemption.restore()


def _train(run: Run, preemption: Preemption) -> dict[str, Any]:
    guard = NonFiniteGuard(run.trainer.skip_nonfinite, run.checkpoint_dir)
    state = run.state
    callbacks = None
    try:
        callbacks = build_callbacks(run)
        callbacks.on_fit_start(run)
        run.model.train()
        preemption.deferring = True
        while not state.done:
            tick = time.perf_counter()  # a step's time includes waiting for its batch (a starved loader shows)
            for batch in run.batches():
                run.values.set_for_step(state.global_step)  # scheduled values of this step (function of the step)
                result = train_step(run, batch, guard)
                if result.applied:
                    run.values.after_update()  # learned values back within their bounds
                    run.method.after_step(result.outputs, batch, state.global_step + 1, state.total_steps)
                state.advance()
                result.seconds = time.perf_counter() - tick
                callbacks.view.result = result
                callbacks.on_step_end(run, result)
                _settle(run, callbacks, preemption)
                tick = time.perf_counter()
                if state.done:
                    break
            if state.epoch_finished and not state.stopped_early:
                state.next_epoch()
                callbacks.on_epoch_end(run)
                _settle(run, callbacks, preemption)
        preemption.deferring = False
        callbacks.on_fit_end(run)
    finally:
        preemption.deferring = False
        try:
            if callbacks is not None:
                callbacks.teardown(run)
            run.accelerator.end_training()
        finally:
            if run.lock is not None:
                run.lock.release()
    return callbacks[RunRecord].results


def _settle(run: Run, callbacks, preemption: Preemption) -> None:
    """After a step's or an epoch's callbacks: every process learns of a signal or a stop request
    (one collective), the checkpoint due is saved, and a signal ends the run."""
    signum, stop = preemption.agreed_with_stop(run.accelerator, callbacks.view.stop_requested)
    if stop and not run.state.stopped_early:
        run.state.stopped_early = True
        reason = callbacks.view.stop_reason or "a callback on another process asked to stop"
        run.accelerator.print(f"stopping after step {run.state.global_step} of {run.state.total_steps}: {reason}")
    checkpoints = callbacks[Checkpointing]
    checkpoints.save_if_due(run)
    if signum:
        callbacks.on_preempted(run)
        raise stopped_by(signum, run, checkpoints.last_saved)
