"""Side concerns of ``fit``, each a [`Callback`][contrastive.training.callbacks.base.Callback], called in one written-down order.

The run is built resumed (`contrastive.training.resume`): every callback starts from the
restored state (the progress bar at the resumed step).  The order ([`default_callbacks`][contrastive.training.callbacks.default_callbacks]),
and why:

1. [`OnlineLinear`][contrastive.training.callbacks.online_linear.OnlineLinear] — the online linear probe of ``eval.online_linear``.
   First, so that it trains on a step's features and adds its train top-1 to the step's result
   before [`Logging`][contrastive.training.callbacks.logging.Logging] writes that step's record (one record per step, as
   without it); it writes nothing itself.  Its test top-1 is measured by the online kNN (4) on
   the kNN's test features and joins the kNN's record.  It changes nothing of training (its own
   optimiser on detached features, no global RNG), so its place cannot change the others.
2. [`Logging`][contrastive.training.callbacks.logging.Logging] — metrics.jsonl, TensorBoard, the progress bar and the views/s
   figure; the others log through it.  Before the checkpoint, so that a step's record is
   written before that step's checkpoint: a run resumed from any checkpoint has every record up to it, and the
   records after it (from before the kill) are dropped when the resumed run starts — each step
   is in metrics.jsonl and on the tracker's step axis exactly once.
3. [`Checkpointing`][contrastive.training.callbacks.checkpointing.Checkpointing] — at a step's or an epoch's end, and when a
   preemption signal stops the loop, it saves before anything later can fail, so a failing
   evaluation leaves a checkpoint to resume from.
4. [`OnlineKNN`][contrastive.training.callbacks.monitor.OnlineKNN] — the online kNN of ``eval.monitor_every`` at epoch ends.
5. [`RunRecord`][contrastive.training.callbacks.run_record.RunRecord] — ``config.yaml`` at the start; at the end
   ``backbone.safetensors`` and ``results.json`` with the final evaluation (it reads 2-4).
6. [`Report`][contrastive.training.callbacks.report.Report] — ``report.html`` (unless ``report: false``), last: it reads what 2-5
   wrote, and a report that fails leaves the run complete.

7. the recipe's ``callbacks:`` (registered under the ``callbacks`` kind, by a plugin or built
   in: ``early_stopping``, ``backbone_snapshots``), in recipe order, after every built-in: they
   see a step's record, checkpoint decision, online probe and online kNN already made.  They receive a
   [`RunView`][contrastive.training.callbacks.view.RunView]; one that raises stops the run with a [`CallbackError`][contrastive.training.callbacks.base.CallbackError]
   naming it and its plugin (exit 2).

A checkpoint due at a step or epoch end is written after all of them ran
([`save_if_due`][contrastive.training.callbacks.checkpointing.Checkpointing.save_if_due]): it holds every callback's state after that
step, so a resumed run continues each callback exactly.  ``teardown`` runs for every callback,
in reverse order, whether the run ended or failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contrastive.training.callbacks.base import Callback, CallbackError, CallbackList, UserCallback
from contrastive.training.callbacks.checkpointing import Checkpointing
from contrastive.training.callbacks.logging import Logging
from contrastive.training.callbacks.monitor import OnlineKNN
from contrastive.training.callbacks.online_linear import OnlineLinear
from contrastive.training.callbacks.report import Report
from contrastive.training.callbacks.run_record import RunRecord
from contrastive.training.callbacks.view import MetricsWriter, RunView

if TYPE_CHECKING:
    from contrastive.training.build import Run

__all__ = ["Callback", "CallbackError", "CallbackList", "Checkpointing", "Logging", "MetricsWriter", "OnlineKNN",
           "OnlineLinear", "Report", "RunRecord", "RunView", "UserCallback", "build_callbacks", "default_callbacks", "recipe_callbacks"]


def default_callbacks(run: Run) -> CallbackList:
    """The side concerns every run has, from the recipe's ``trainer:`` and ``eval:`` settings."""
    trainer = run.trainer
    checkpoints = Checkpointing(trainer.checkpoint_every, trainer.checkpoint_every_steps, trainer.keep_last)
    logging = Logging(trainer.log_every, trainer.progress, trainer.speed_warmup_steps)
    evaluation = run.recipe.eval
    probe = OnlineLinear(evaluation.online_linear, evaluation.online_linear_lr, trainer.log_every)
    monitor = OnlineKNN(evaluation.monitor_every, logging, probe)
    record = RunRecord(checkpoints, logging, monitor)
    return CallbackList([probe, logging, checkpoints, monitor, record, Report(record)])


def recipe_callbacks(run: Run) -> list[UserCallback]:
    """The recipe's ``callbacks:``, built from the ``callbacks`` registry in recipe order."""
    built, seen = [], {}
    for component in run.recipe.callbacks:
        registry = run.registries.callbacks
        seen[component.name] = seen.get(component.name, 0) + 1
        key = component.name if seen[component.name] == 1 else f"{component.name}#{seen[component.name]}"
        source = registry.source(component.name)
        user = UserCallback(component.name, source, None, key)
        try:
            user.callback = registry.build(component.name, **component.args)
        except Exception as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise CallbackError(f"{user.label} could not be built: {type(exc).__name__}: {message}") from exc
        built.append(user)
    return built


def build_callbacks(run: Run) -> CallbackList:
    """The built-ins ([`default_callbacks`][contrastive.training.callbacks.default_callbacks]) then the recipe's callbacks, with their view of the
    run; the checkpoints carry the recipe's callbacks' states, restored here on a resume."""
    from contrastive.storage import checkpoint

    defaults = default_callbacks(run)
    view = RunView(run, MetricsWriter(defaults[Logging], run.state))
    callbacks = CallbackList(defaults.callbacks, recipe_callbacks(run), view)
    callbacks[Checkpointing].states = callbacks.state_dict
    if run.resumed_from is not None:
        callbacks.load_state_dict(checkpoint.callback_states(run.resumed_from))
    return callbacks
