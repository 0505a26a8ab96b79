"""Every file of a run directory (``trainer.output_dir``), named in one place: `RunDir`.

The names are a public contract (what ``eval``, ``embed``, ``export``, ``report`` and people's
scripts read back), so they never change:

=========================  ==========================================================================
``RunDir`` attribute       file, and what it holds
=========================  ==========================================================================
``config``                 ``config.yaml``: the resolved recipe, plugins and versions, the run's plan
``results``                ``results.json``: loss, views/s, peak memory, evaluation scores, wall time
``backbone``               ``backbone.safetensors``: the backbone's state dict (the same timm model)
``metrics``                ``metrics.jsonl``: one JSON record per logged step (loss, lr, diagnostics)
``checkpoints``            ``checkpoints/``: resumable state, one folder per step
                           (`contrastive.storage.checkpoint`)
``report``                 ``report.html``: the run's self-contained report (``contrastive report``)
``lock``                   ``.lock``: the one-writer lock, held while ``fit`` runs
                           (`contrastive.storage.run_lock`)
``snapshots``              ``snapshots/``: ``backbone_snapshots`` callback's folders; each,
                           `RunDir.snapshot`, is itself a run directory (config and backbone)
``tensorboard``            ``tensorboard/``: the TensorBoard tracker's logs (the default tracker)
``mlflow``                 ``mlruns/``: the MLflow tracker's logs (``trainer.log_with mlflow``)
=========================  ==========================================================================

This module imports nothing beyond the standard library.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory's files; nothing is created or read (a path is a name)."""

    root: Path

    CONFIG = "config.yaml"
    RESULTS = "results.json"
    BACKBONE = "backbone.safetensors"
    METRICS = "metrics.jsonl"
    CHECKPOINTS = "checkpoints"
    REPORT = "report.html"
    LOCK = ".lock"
    SNAPSHOTS = "snapshots"
    TENSORBOARD = "tensorboard"
    MLFLOW = "mlruns"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))  # accept a str as well

    @property
    def config(self) -> Path:
        return self.root / self.CONFIG

    @property
    def results(self) -> Path:
        return self.root / self.RESULTS

    @property
    def backbone(self) -> Path:
        return self.root / self.BACKBONE

    @property
    def metrics(self) -> Path:
        return self.root / self.METRICS

    @property
    def checkpoints(self) -> Path:
        return self.root / self.CHECKPOINTS

    @property
    def report(self) -> Path:
        return self.root / self.REPORT

    @property
    def lock(self) -> Path:
        return self.root / self.LOCK

    @property
    def snapshots(self) -> Path:
        return self.root / self.SNAPSHOTS

    @property
    def tensorboard(self) -> Path:
        return self.root / self.TENSORBOARD

    @property
    def mlflow(self) -> Path:
        return self.root / self.MLFLOW

    def snapshot(self, epoch: int) -> RunDir:
        """The ``backbone_snapshots`` folder of ``epoch`` (epochs finished), ``snapshots/epoch_0004``."""
        return RunDir(self.snapshots / f"epoch_{epoch:04d}")

    def write_probe(self) -> Path:
        """A scratch file to check that this process can write here (one name per process)."""
        return self.root / f".write-test-{os.getpid()}"
