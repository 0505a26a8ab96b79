"""What a run reports while it trains: metrics.jsonl, the tracker, the progress bar, views/s."""

from __future__ import annotations

import collections
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contrastive.recipe import flatten
from contrastive.storage.files import atomic_write_text, metric_records
from contrastive.training.callbacks.base import Callback
from contrastive.training.state import is_record_step

if TYPE_CHECKING:
    from contrastive.training.build import Run


def flat_hparams(config: dict[str, Any]) -> dict[str, Any]:
    """A nested recipe mapping as ``{"loss.args.temperature": 0.5, ...}`` for the tracker: scalars
    as they are, anything else as text; nulls and empty sections left out."""
    return {key: value if isinstance(value, (int, float, str, bool)) else str(value)
            for key, value in flatten(config).items() if value is not None and value != {} and value != []}


def keep_records_up_to(path: Path, step: int) -> None:
    """Rewrite ``metrics.jsonl`` with only its records of steps <= ``step`` (atomically); lines
    cut by a kill and records a resumed run will write again are dropped."""
    if not path.is_file():
        return
    atomic_write_text(path, "".join(line + "\n" for line, record in metric_records(path) if record["step"] <= step))


class ThroughputMeter:
    """Views per second over the steps after the first ``warmup_steps`` (which include start-up
    costs); a run shorter than that counts its last step."""

    def __init__(self, warmup_steps: int = 5) -> None:
        self.warmup_steps = warmup_steps
        self.steps, self.seconds = 0, 0.0

    def add(self, step: int, total_steps: int, seconds: float) -> None:
        if step - 1 >= self.warmup_steps or self.steps == 0 and step >= total_steps:
            self.steps += 1
            self.seconds += seconds

    def views_per_second(self, views_per_step: int) -> float | None:
        return views_per_step * self.steps / self.seconds if self.seconds > 0 else None


class Logging(Callback):
    """One record per ``log_every`` steps (and the last) to metrics.jsonl and TensorBoard, with
    the values the step used of the recipe's schedules and learned values (``schedule/loss.temperature``,
    ``learned/loss.temperature``; `contrastive.training.scheduled`) and the method's diagnostics;
    the progress bar every step (main process only)."""

    def __init__(self, log_every: int = 10, progress: bool = True, speed_warmup_steps: int = 5) -> None:
        self.log_every = log_every
        self.progress = progress
        self.throughput = ThroughputMeter(speed_warmup_steps)
        self.bar = None
        self.metrics_file = None
        self.last_loss = math.nan
        self.recent_losses: collections.deque[float] = collections.deque()
        self.latest: dict[str, tuple[int, float]] = {}  # key -> (step, value) of its newest record
        self._run = None

    def on_fit_start(self, run: Run) -> None:
        self._run = run
        self.recent_losses = collections.deque(maxlen=run.state.steps_per_epoch)
        if run.main and self.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=run.state.total_steps, initial=run.state.global_step, unit="step", dynamic_ncols=True)
        step = run.state.global_step
        if run.main:
            path = run.files.metrics
            keep_records_up_to(path, step)  # a fresh run (step 0) starts an empty file
            self.metrics_file = open(path, "a")  # noqa: SIM115  closed in teardown
        # TensorBoard hides the events of earlier sessions at steps >= purge_step: those logged
        # after the resumed checkpoint (or all of a previous run's, when starting fresh)
        # mlflow: its runs beside the others, not in ./mlruns of wherever fit was started
        run.accelerator.init_trackers(
            run.trainer.project or run.out.resolve().name, config=flat_hparams(run.recipe.to_dict()),
            init_kwargs={"tensorboard": {"purge_step": step + 1 if step else 0},
                         "mlflow": {"logging_dir": str(run.files.mlflow)}})

    def write(self, record: dict[str, Any], *, show: str | None = None) -> None:
        """Log ``record`` (``step`` and ``epoch`` included) to the tracker and metrics.jsonl;
        ``show``: also print this line (through the progress bar when it is up)."""
        run = self._run
        self.latest.update({k: (record["step"], v) for k, v in record.items()
                            if k not in ("step", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool)})
        run.accelerator.log({k: v for k, v in record.items() if k not in ("step", "epoch")}, step=record["step"])
        if self.metrics_file is not None:
            self.metrics_file.write(json.dumps(record) + "\n")
            self.metrics_file.flush()
        if show is not None and run.main:
            (self.bar.write if self.bar is not None else print)(show)

    def on_step_end(self, run: Run, result) -> None:
        state = run.state
        self.last_loss = result.loss
        if math.isfinite(result.loss):
            self.recent_losses.append(result.loss)
        self.throughput.add(state.global_step, state.total_steps, result.seconds)
        lr = run.optimizer.param_groups[0]["lr"]
        speed = run.views_per_step / result.seconds if result.seconds > 0 else 0.0
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(epoch=state.epoch, loss=f"{result.loss:.4f}", lr=f"{lr:.3g}", views_s=f"{speed:.0f}")
        if is_record_step(state.global_step, state.total_steps, self.log_every):
            self.write({"step": state.global_step, "epoch": state.epoch, "loss": result.loss, "lr": lr,
                        **run.values.record(), "views_per_second": speed, **result.logs})

    def loss_last_epoch_mean(self) -> float:
        window = list(self.recent_losses) or [self.last_loss]
        return sum(window) / len(window)

    def teardown(self, run: Run) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.metrics_file is not None:
            self.metrics_file.close()
