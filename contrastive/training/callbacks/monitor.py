"""The online kNN of ``eval.monitor_every``: frozen-feature kNN on the eval data at epoch ends."""

from __future__ import annotations

from contrastive.distributed import evaluation_group
from contrastive.evaluation import KNNMonitor
from contrastive.evaluation.data import evaluation_on
from contrastive.training.callbacks.base import Callback


class OnlineKNN(Callback):
    """Every ``every`` epochs (0: off): kNN top-1 of the backbone as it is, logged to metrics.jsonl /
    TensorBoard and printed (main process).  Every process takes part, in lockstep: each extracts its
    shard of the features and all wait for each other under ``eval.collective_timeout`` (:attr:`group`),
    never at a training collective.  Its eval data and group are reused by the final evaluation."""

    def __init__(self, every: int, logging) -> None:
        self.every = every
        self.logging = logging
        self.monitor = None
        self.group = None  # evaluation's process group (None: one process, or no evaluation)

    def on_fit_start(self, run) -> None:
        if evaluation_on(run.recipe):
            self.group = evaluation_group(run.recipe.eval.collective_timeout)  # a collective: every process
        if self.every:
            self.monitor = KNNMonitor.start(run.recipe, run.registries, run.device, plan=run.plan,
                                            group=self.group)  # None: no labels (noted)

    @property
    def data(self):
        """The monitor's eval data (None when the monitor is off)."""
        return self.monitor.data if self.monitor is not None else None

    def on_epoch_end(self, run) -> None:
        if self.monitor is None or run.state.epoch % self.every:
            return
        record = {"step": run.state.global_step, "epoch": run.state.epoch - 1, **self.monitor(run.method.backbone)}
        if run.main:
            self.logging.write(record, show=f"epoch {run.state.epoch - 1}: online kNN top-1 {record['knn_top1']:.4f}")
