"""Side concerns of ``fit``, each a :class:`Callback`, called in one written-down order.

The run is built resumed (:mod:`contrastive.training.resume`): every callback starts from the
restored state (the progress bar at the resumed step).  The order (:func:`default_callbacks`),
and why:

1. :class:`~.logging.Logging` — metrics.jsonl, TensorBoard, the progress bar and the views/s
   figure; the others log through it.  First, so that a step's record is written before that
   step's checkpoint: a run resumed from any checkpoint has every record up to it, and the
   records after it (from before the kill) are dropped when the resumed run starts — each step
   is in metrics.jsonl and on the tracker's step axis exactly once.
2. :class:`~.checkpointing.Checkpointing` — at a step's or an epoch's end, and when a
   preemption signal stops the loop, it saves before anything later can fail, so a failing
   evaluation leaves a checkpoint to resume from.
3. :class:`~.monitor.OnlineKNN` — the online kNN of ``eval.monitor_every`` at epoch ends.
4. :class:`~.run_record.RunRecord` — ``config.yaml`` at the start; at the end
   ``backbone.safetensors`` and ``results.json`` with the final evaluation (it reads 1-3).
5. :class:`~.report.Report` — ``report.html`` (unless ``report: false``), last: it reads what 1-4
   wrote, and a report that fails leaves the run complete.

``teardown`` runs for every callback, in reverse order, whether the run ended or failed.
"""

from __future__ import annotations

from contrastive.training.callbacks.base import Callback, CallbackList
from contrastive.training.callbacks.checkpointing import Checkpointing
from contrastive.training.callbacks.logging import Logging
from contrastive.training.callbacks.monitor import OnlineKNN
from contrastive.training.callbacks.report import Report
from contrastive.training.callbacks.run_record import RunRecord

__all__ = ["Callback", "CallbackList", "Checkpointing", "Logging", "OnlineKNN", "Report", "RunRecord",
           "default_callbacks"]


def default_callbacks(run) -> CallbackList:
    """The side concerns every run has, from the recipe's ``trainer:`` and ``eval:`` settings."""
    trainer = run.trainer
    checkpoints = Checkpointing(trainer.checkpoint_every, trainer.checkpoint_every_steps, trainer.keep_last)
    logging = Logging(trainer.log_every, trainer.progress, trainer.speed_warmup_steps)
    monitor = OnlineKNN(run.recipe.eval.monitor_every, logging)
    record = RunRecord(checkpoints, logging, monitor)
    return CallbackList([logging, checkpoints, monitor, record, Report(record)])
