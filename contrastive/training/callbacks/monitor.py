"""The online kNN of ``eval.monitor_every``: frozen-feature kNN on the eval data at epoch ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from contrastive.distributed import evaluation_group
from contrastive.evaluation import KNNMonitor
from contrastive.evaluation.data import evaluation_on
from contrastive.training.callbacks.base import Callback

if TYPE_CHECKING:
    from contrastive.training.build import Run


class OnlineKNN(Callback):
    """Every ``every`` epochs (0: off): kNN top-1 of the backbone as it is, logged to metrics.jsonl /
    TensorBoard and printed (main process), with the online linear probe's top-1 on the same test
    features (``probe``: [`OnlineLinear`][contrastive.training.callbacks.online_linear.OnlineLinear],
    when it is on).  Every process takes part, in lockstep: each extracts its shard of the features
    and all wait for each other under ``eval.collective_timeout`` (``group``), never at a training
    collective.  Its eval data and group are reused by the final evaluation."""

    def __init__(self, every: int, logging, probe=None) -> None:
        self.every = every
        self.logging = logging
        self.probe = probe
        self.monitor = None
        self.group = None  # evaluation's process group (None: one process, or no evaluation)

    def on_fit_start(self, run: Run) -> None:
        if evaluation_on(run.recipe):
            self.group = evaluation_group(run.recipe.eval.collective_timeout)  # a collective: every process
        if self.every:
            self.monitor = KNNMonitor.start(run.recipe, run.registries, run.device, plan=run.plan,
                                            group=self.group)  # None: no labels (noted)

    @property
    def data(self):
        """The monitor's eval data (None when the monitor is off)."""
        return self.monitor.data if self.monitor is not None else None

    def on_epoch_end(self, run: Run) -> None:
        if self.monitor is None or run.state.epoch % self.every:
            return
        record = {"step": run.state.global_step, "epoch": run.state.epoch - 1, **self.monitor(run.method.backbone)}
        show = f"epoch {run.state.epoch - 1}: online kNN top-1 {record['knn_top1']:.4f}"
        if self.probe is not None:
            record.update(self.probe.test_scores(self.monitor.last_test))
        if "online_linear_top1" in record:
            show += f", online linear top-1 {record['online_linear_top1']:.4f}"
        if run.main:
            self.logging.write(record, show=show)
