"""The online kNN of ``eval.monitor_every``: frozen-feature kNN on the eval data at epoch ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from contrastive.evaluation import KNNMonitor
from contrastive.training.callbacks.base import Callback

if TYPE_CHECKING:
    from contrastive.training.build import Run


class OnlineKNN(Callback):
    """Every ``every`` epochs (0: off) on the main process: kNN top-1 of the backbone as it is,
    logged to metrics.jsonl / TensorBoard and printed.  Its eval data is reused by the final
    evaluation."""

    def __init__(self, every: int, logging) -> None:
        self.every = every
        self.logging = logging
        self.monitor = None

    def on_fit_start(self, run: Run) -> None:
        if run.main and self.every:
            self.monitor = KNNMonitor.start(run.recipe, run.registries, run.device, plan=run.plan)  # None: no labels (noted)

    @property
    def data(self):
        """The monitor's eval data (None when the monitor is off)."""
        return self.monitor.data if self.monitor is not None else None

    def on_epoch_end(self, run: Run) -> None:
        if self.monitor is None or run.state.epoch % self.every:
            return
        record = {"step": run.state.global_step, "epoch": run.state.epoch - 1, **self.monitor(run.method.backbone)}
        self.logging.write(record, show=f"epoch {run.state.epoch - 1}: online kNN top-1 {record['knn_top1']:.4f}")
