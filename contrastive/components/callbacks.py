"""Built-in callbacks a recipe can name (``callbacks: [{name, args}]``), registered like a plugin's.

* ``early_stopping`` — stop the run when a logged metric stops improving;
* ``backbone_snapshots`` — keep the backbone every N epochs, each as a folder that
  ``contrastive eval`` takes like a finished run.

Each receives the [`RunView`][contrastive.training.callbacks.view.RunView] of the run; the
contract is in docs/callbacks.md.
"""

from __future__ import annotations

import math
import shutil
from typing import TYPE_CHECKING, Any, Literal

from contrastive import hookimpl
from contrastive.errors import InvalidArgumentsError

if TYPE_CHECKING:
    from contrastive.registry import Registries
    from contrastive.training.callbacks.view import RunView


class EarlyStopping:
    """Stop the run when ``monitor`` has not improved for ``patience`` evaluations.

    ``monitor`` is any logged metric: ``loss`` (logged every ``trainer.log_every`` steps),
    ``knn_top1`` (the online kNN, every ``eval.monitor_every`` epochs), a method diagnostic or
    another callback's value.  Each new record of it is one evaluation; an improvement is a
    value better than the best so far by more than ``min_delta`` (``mode``: ``max`` for
    accuracies, ``min`` for losses).  Non-finite values never improve.  The best value and the
    count without improvement are kept in checkpoints, so a resumed run stops at the same step.
    """

    def __init__(self, monitor: str, patience: int = 3, mode: Literal["max", "min"] = "max",
                 min_delta: float = 0.0) -> None:
        if patience < 1:
            raise InvalidArgumentsError(f"early_stopping: patience counts evaluations without improvement, >= 1; got {patience}")
        if min_delta < 0:
            raise InvalidArgumentsError(f"early_stopping: min_delta must be >= 0, got {min_delta}")
        self.monitor, self.patience, self.mode, self.min_delta = monitor, patience, mode, min_delta
        self.best: float | None = None
        self.bad = 0  # evaluations since the last improvement
        self.seen_step = 0  # the step of the newest record of monitor already judged

    def _improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta

    def _check(self, run: RunView) -> None:
        found = run.metrics.latest(self.monitor)
        if found is None or found[0] <= self.seen_step:
            return
        self.seen_step, value = found[0], float(found[1])
        if self._improved(value):
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            run.request_stop(f"early_stopping: {self.monitor} has not improved on {self.best!r} for {self.bad} evaluations")

    def on_step_end(self, run: RunView, result) -> None:
        self._check(run)

    def on_epoch_end(self, run: RunView) -> None:
        self._check(run)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad": self.bad, "seen_step": self.seen_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad, self.seen_step = state["best"], int(state["bad"]), int(state["seen_step"])


class BackboneSnapshots:
    """Keep the backbone every ``every`` epochs: ``RUN_DIR/snapshots/epoch_NNNN/`` holds its
    ``backbone.safetensors`` and the run's ``config.yaml``, so ``contrastive eval
    RUN_DIR/snapshots/epoch_0010`` scores it like a finished run (main process writes)."""

    def __init__(self, every: int = 1) -> None:
        if every < 1:
            raise InvalidArgumentsError(f"backbone_snapshots: every is a number of epochs, >= 1; got {every}")
        self.every = every

    def on_epoch_end(self, run: RunView) -> None:
        if not run.main or run.epoch % self.every:
            return
        from safetensors.torch import save_file

        from contrastive.storage.files import atomic_write
        from contrastive.storage.run_dir import RunDir

        folder = RunDir(run.out).snapshot(run.epoch)
        folder.root.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().cpu().contiguous() for k, v in run.backbone.state_dict().items()}
        atomic_write(folder.backbone,
                     lambda tmp: save_file(weights, tmp, metadata={"backbone": run.recipe.backbone.name}))
        shutil.copyfile(RunDir(run.out).config, folder.config)


@hookimpl
def contrastive_register(registries: Registries):
    registries.callbacks.register("early_stopping", EarlyStopping)
    registries.callbacks.register("backbone_snapshots", BackboneSnapshots)
