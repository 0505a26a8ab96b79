"""The training loop: ``fit(recipe)``, short on purpose.

Per optimiser step the loop draws a batch, lets :func:`~contrastive.training.step.train_step`
make the views and run the method's ``forward`` and ``loss`` (GradCache over
``trainer.accumulate`` chunks), the guard and the update, calls the method's ``after_step``
when the update was applied, and hands the result to the callbacks
(:mod:`contrastive.training.callbacks`: checkpoints and resume, logging, the online kNN, the
run record with the final evaluation), in their written-down order.  The loop imports no method.
"""

from __future__ import annotations

import time
from typing import Any

from contrastive.recipe import Recipe
from contrastive.training.build import build_run
from contrastive.training.callbacks import RunRecord, default_callbacks
from contrastive.training.step import NonFiniteGuard, train_step


def fit(recipe: Recipe, registries) -> dict[str, Any]:
    """Train ``recipe``; returns what ``results.json`` holds (an empty dict on other processes)."""
    run = build_run(recipe, registries)
    callbacks = default_callbacks(run)
    guard = NonFiniteGuard(recipe.trainer.skip_nonfinite, run.checkpoint_dir)
    state = run.state
    try:
        callbacks.on_fit_start(run)
        run.model.train()
        while not state.done:
            tick = time.perf_counter()  # a step's time includes waiting for its batch (a starved loader shows)
            for batch in run.batches():
                result = train_step(run, batch, guard)
                if result.applied:
                    run.method.after_step(result.outputs, batch, state.global_step + 1, state.total_steps)
                state.advance()
                result.seconds = time.perf_counter() - tick
                callbacks.on_step_end(run, result)
                tick = time.perf_counter()
                if state.global_step >= state.total_steps:
                    break
            if state.epoch_finished:
                state.next_epoch()
                callbacks.on_epoch_end(run)
        callbacks.on_fit_end(run)
    finally:
        callbacks.teardown(run)
        run.accelerator.end_training()
    return callbacks[RunRecord].results
