"""The training loop: ``fit(recipe)``, short on purpose.

Per optimiser step the loop draws a batch, lets :func:`~contrastive.training.step.train_step`
make the views and run the method's ``forward`` and ``loss`` (GradCache over
``trainer.accumulate`` chunks), the guard and the update, calls the method's ``after_step``
when the update was applied, and hands the result to the callbacks
(:mod:`contrastive.training.callbacks`: logging, checkpoints, the online kNN, the run record
with the final evaluation), in their written-down order.  After each step every process asks
whether a preemption signal came (:mod:`contrastive.training.preemption`); if one did, the
callbacks save and the run stops.  The loop imports no method.
"""

from __future__ import annotations

import time
from typing import Any

from contrastive.recipe import Recipe
from contrastive.training.build import build_run
from contrastive.training.callbacks import Checkpointing, RunRecord, default_callbacks
from contrastive.training.faults import lost_processes_are_errors, stopped_by
from contrastive.training.preemption import Preemption
from contrastive.training.step import NonFiniteGuard, train_step


def fit(recipe: Recipe, registries) -> dict[str, Any]:
    """Train ``recipe``; returns what ``results.json`` holds (an empty dict on other processes)."""
    preemption = Preemption(recipe.trainer.preempt_signals).install()
    try:
        run = build_run(recipe, registries)
        with lost_processes_are_errors(run):
            return _train(run, preemption)
    finally:
        preemption.restore()


def _train(run, preemption: Preemption) -> dict[str, Any]:
    callbacks = default_callbacks(run)
    guard = NonFiniteGuard(run.trainer.skip_nonfinite, run.checkpoint_dir)
    state = run.state
    try:
        callbacks.on_fit_start(run)
        run.model.train()
        preemption.deferring = True
        while not state.done:
            tick = time.perf_counter()  # a step's time includes waiting for its batch (a starved loader shows)
            for batch in run.batches():
                result = train_step(run, batch, guard)
                if result.applied:
                    run.method.after_step(result.outputs, batch, state.global_step + 1, state.total_steps)
                state.advance()
                result.seconds = time.perf_counter() - tick
                callbacks.on_step_end(run, result)
                if signum := preemption.agreed(run.accelerator):
                    callbacks.on_preempted(run)
                    raise stopped_by(signum, run, callbacks[Checkpointing].last_saved)
                tick = time.perf_counter()
                if state.global_step >= state.total_steps:
                    break
            if state.epoch_finished:
                state.next_epoch()
                callbacks.on_epoch_end(run)
        if signum := preemption.agreed(run.accelerator):  # came during the last epoch's end
            raise stopped_by(signum, run, callbacks[Checkpointing].last_saved)
        preemption.deferring = False
        callbacks.on_fit_end(run)
    finally:
        preemption.deferring = False
        try:
            callbacks.teardown(run)
            run.accelerator.end_training()
        finally:
            if run.lock is not None:
                run.lock.release()
    return callbacks[RunRecord].results
