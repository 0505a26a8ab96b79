"""What a run leaves behind: config.yaml, backbone.safetensors, results.json (with the final
evaluation), each written atomically (`contrastive.storage.files`): ``eval`` may read them while
the run writes."""

from __future__ import annotations

import json
import platform
import resource
import time
from typing import TYPE_CHECKING, Any

import torch
import yaml

from contrastive.components.datasets.contract import dataset_info
from contrastive.evaluation import evaluate
from contrastive.storage.files import atomic_write, atomic_write_text
from contrastive.training.callbacks.base import Callback

if TYPE_CHECKING:
    from contrastive.registry import Registries
    from contrastive.training.build import Run


def versions() -> dict[str, str]:
    """Versions of the libraries a run's numbers depend on."""
    import accelerate
    import kornia
    import timm
    import torchvision

    from contrastive._version import __version__

    found = {
        "contrastive": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "kornia": kornia.__version__,
        "accelerate": accelerate.__version__,
    }
    return {k: str(v) for k, v in found.items()}


def plugins(registries: Registries) -> list[dict[str, Any]]:
    """The plugins a run was built with (built-ins included), with their distributions' versions."""
    return [
        {"name": p.name, "distribution": p.distribution, "version": p.version, "builtin": p.builtin}
        for p in registries.plugins
    ]


def launch(run: Run) -> dict[str, Any]:
    """How the run was actually launched: the precision and processes Accelerate resolved."""
    return {"mixed_precision": run.accelerator.mixed_precision, "processes": run.accelerator.num_processes,
            "device": str(run.device)}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class RunRecord(Callback):
    """``config.yaml`` (the run's recipe + plugins + versions + launch + its plan) at the start; at the end
    ``backbone.safetensors``, the frozen-feature evaluation and ``results.json``.  The main process
    writes; every process takes part in the evaluation (each extracts its shard, in the monitor's
    evaluation group: [`OnlineKNN`][contrastive.training.callbacks.monitor.OnlineKNN])."""

    def __init__(self, checkpoints, logging, monitor) -> None:
        self.checkpoints, self.logging, self.monitor = checkpoints, logging, monitor
        self.results: dict[str, Any] = {}

    def on_fit_start(self, run: Run) -> None:
        if not run.main:
            return
        config = run.recipe.to_dict()
        config["plugins"] = plugins(run.registries)
        config["versions"] = versions()
        config["launch"] = launch(run)
        config["plan"] = run.plan.to_dict()  # read back by eval, embed, export and report (contrastive.plan)
        atomic_write_text(run.files.config, yaml.safe_dump(config, sort_keys=False, default_flow_style=None))

    def on_fit_end(self, run: Run) -> None:
        recipe = run.recipe
        if not run.main:
            if recipe.eval.protocols:
                self._evaluate(run)
            return
        from safetensors.torch import save_file

        state = run.state
        weights = {k: v.detach().cpu().contiguous() for k, v in run.method.backbone.state_dict().items()}
        atomic_write(run.files.backbone, lambda tmp: save_file(weights, tmp, metadata={"backbone": recipe.backbone.name}))
        last = self.checkpoints.last_saved
        results = {
            "loss": self.logging.last_loss,
            "loss_last_epoch_mean": self.logging.loss_last_epoch_mean(),
            "steps": state.global_step,
            "stopped_early": state.stopped_early,  # a callback asked to stop before total_steps
            "epochs": state.epoch,
            "method": recipe.method.name,
            "global_batch_size": run.global_batch,
            "views_per_image": run.views.total,
            "processes": run.accelerator.num_processes,
            "device": str(run.device),
            "mixed_precision": run.accelerator.mixed_precision,  # what the run used (recipe, else launcher)
            "views_per_second": self.logging.throughput.views_per_second(run.views_per_step),
            "peak_memory_mb": peak_memory_mb(run.device),
            "wall_time_s": time.perf_counter() - run.started,
            "checkpoint": str(last) if last else None,
            "nonfinite_steps_skipped": state.nonfinite_skipped,
            "skipped_files": dataset_info(run.dataset).skipped_files,
            "amp_skipped_steps": state.amp_skipped,
            "versions": versions(),
            "plugins": plugins(run.registries),
        }
        if recipe.eval.protocols:  # frozen-feature kNN / linear probe beside the baselines
            results["eval"] = self._evaluate(run)
        atomic_write_text(run.files.results, json.dumps(results, indent=2))
        self.results = results

    def _evaluate(self, run: Run) -> dict[str, Any]:
        """The final evaluation, on every process together (the same call on each)."""
        return evaluate(run.method.backbone, run.recipe, run.registries, data=self.monitor.data, device=run.device,
                        plan=run.plan, group=self.monitor.group)
