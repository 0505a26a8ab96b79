"""The online linear probe of ``eval.online_linear``: a linear classifier trained during fit on the
detached backbone features of the training views (solo-learn's, lightly's online classifier).

The features are the ones the method's own forward computes: a forward hook on the backbone
keeps a detached copy of its output ``(n * B, num_features)`` for each pass over views of the
first group's size (the global crops), and a forward pre-hook on the method gives the chunk's
labels (repeated per view: [`embed_views`][contrastive.methods.base.embed_views] concatenates views
view-major).  Only passes that build a graph are kept, so GradCache's graph-free first passes
are not counted twice, and evaluation (the backbone in eval mode) is never seen.  Nothing flows
back: the head has its own optimiser (AdamW, ``eval.online_linear_lr``, no weight decay), its
weights start at zero and nothing it does draws from the global RNG, so training is unchanged.

With several processes each trains on its own features and the head's gradient is averaged over
processes, as DDP averages the model's: every process holds the same head.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from contrastive.components.datasets.contract import dataset_info
from contrastive.training.callbacks.base import Callback
from contrastive.training.state import is_record_step

if TYPE_CHECKING:
    from contrastive.training.build import Run

#: Its entry in a checkpoint's callback states (a user callback's key has no colon).
STATE_KEY = "builtin:online_linear"


def mean_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` averaged over the processes of the default process group (itself without one)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return tensor
    torch.distributed.all_reduce(tensor)
    return tensor / torch.distributed.get_world_size()


def _encode(value: Any) -> Any:
    """JSON-able, exact: tensors as ``{"tensor": base64 bytes, "dtype", "shape"}``."""
    if isinstance(value, torch.Tensor):
        array = value.detach().cpu().contiguous().numpy()
        return {"tensor": base64.b64encode(array.tobytes()).decode(), "dtype": str(array.dtype), "shape": list(array.shape)}
    if isinstance(value, dict):
        return {"keys": [_encode(k) for k in value], "values": [_encode(v) for v in value.values()]}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any, device: torch.device) -> Any:
    if isinstance(value, dict) and "tensor" in value:
        array = np.frombuffer(base64.b64decode(value["tensor"]), dtype=value["dtype"]).reshape(value["shape"])
        return torch.from_numpy(array.copy()).to(device)
    if isinstance(value, dict):
        return {_decode(k, device): _decode(v, device) for k, v in zip(value["keys"], value["values"], strict=True)}
    if isinstance(value, list):
        return [_decode(v, device) for v in value]
    return value


class LinearProbe:
    """A linear head ``(N, num_features) -> (N, num_classes)`` and its own AdamW; zero-initialised."""

    def __init__(self, num_features: int, num_classes: int, lr: float, device: torch.device | str = "cpu") -> None:
        self.head = nn.utils.skip_init(nn.Linear, num_features, num_classes, device=device)  # no draw from the global RNG
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()
        self.optimizer = torch.optim.AdamW(self.head.parameters(), lr=lr, weight_decay=0.0)

    def step(self, features: torch.Tensor, labels: torch.Tensor,
             reduce: Callable[[torch.Tensor], torch.Tensor] = mean_over_processes) -> float:
        """One update on ``features`` ``(N, D)`` and ``labels`` ``(N,)`` (-1: none, left out); the
        gradient and the accuracy go through ``reduce`` (the mean over processes).  Returns the
        top-1 of the logits before the update over every process's labelled rows (NaN: none)."""
        features, labels = features.float(), labels.long()
        known = labels >= 0
        logits = self.head(features)
        loss = F.cross_entropy(logits[known], labels[known], reduction="sum") / max(int(known.sum()), 1)
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        params = [self.head.weight, self.head.bias]
        flat = reduce(torch.cat([p.grad.flatten() for p in params]))
        for p, grad in zip(params, flat.split([p.numel() for p in params]), strict=True):
            p.grad.copy_(grad.view_as(p))
        correct = (logits.detach().argmax(1) == labels)[known].sum()
        counts = reduce(torch.stack([correct, known.sum()]).double())
        self.optimizer.step()
        return float(counts[0] / counts[1]) if counts[1] > 0 else math.nan

    @torch.no_grad()
    def top1(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        """Top-1 of the head on ``features`` ``(N, D)`` with ``labels`` ``(N,)``."""
        predicted = self.head(features.to(self.head.weight.device).float()).argmax(1).cpu()
        return float((predicted == labels.cpu()).double().mean())

    def state_dict(self) -> dict[str, Any]:
        """The head's weights and the optimiser's state, exactly, as JSON values."""
        return {"head": _encode(self.head.state_dict()), "optimizer": _encode(self.optimizer.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.head.weight.device
        self.head.load_state_dict(_decode(state["head"], device))
        self.optimizer.load_state_dict(_decode(state["optimizer"], device))


def probe_classes(dataset) -> int | None:
    """The number of classes of labelled training data; None without labels or when unknown."""
    info = dataset_info(dataset)
    if not info.has_labels:
        return None
    if info.classes:
        return len(info.classes)
    return int(info.labels.max()) + 1 if info.labels is not None and len(info.labels) else None


class OnlineLinear(Callback):
    """``eval.online_linear``: the probe trained at every step's end on that step's features, its
    train top-1 (``online_linear_train_top1``) added to the step's record; its top-1 on the online
    kNN's test features (``online_linear_top1``) joins the kNN's record ([`test_scores`][contrastive.training.callbacks.online_linear.OnlineLinear.test_scores])."""

    def __init__(self, enabled: bool, lr: float, log_every: int) -> None:
        self.enabled, self.lr, self.log_every = enabled, lr, log_every
        self.probe: LinearProbe | None = None
        self._pending: dict[str, Any] | None = None  # the state of a checkpoint, loaded at fit start
        self._chunk: tuple[torch.Tensor, tuple[int, ...]] | None = None  # labels and view size of the forward in progress
        self._features: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._hooks: list[Any] = []

    @property
    def state_key(self) -> str:
        return STATE_KEY

    def on_fit_start(self, run: Run) -> None:
        if not self.enabled:
            return
        classes = probe_classes(run.dataset)
        width = getattr(run.method.backbone, "num_features", None)
        if classes is None or not isinstance(width, int):
            why = "the training data has no labels" if classes is None else "the backbone has no int num_features"
            run.accelerator.print(f"note: eval.online_linear is off: {why}")
            return
        self.probe = LinearProbe(width, classes, self.lr, run.device)
        if self._pending is not None:
            self.probe.load_state_dict(self._pending)
            self._pending = None
        self._hooks = [run.method.register_forward_pre_hook(self._method_called, with_kwargs=True),
                       run.method.backbone.register_forward_hook(self._backbone_called)]

    def _method_called(self, module, args, kwargs) -> None:
        views = args[0] if args else kwargs["views"]
        batch = args[1] if len(args) > 1 else kwargs["batch"]
        self._chunk = (batch.labels, tuple(views[0].shape[-2:])) if torch.is_grad_enabled() else None

    def _backbone_called(self, module, args, output) -> None:
        if self._chunk is None or not module.training or not args or not isinstance(output, torch.Tensor):
            return
        labels, size = self._chunk
        rows = output.shape[0]
        if tuple(args[0].shape[-2:]) != size or output.ndim != 2 or rows % len(labels):
            return
        self._features.append(output.detach())
        self._labels.append(labels.repeat(rows // len(labels)))

    def on_step_end(self, run: Run, result) -> None:
        if self.probe is None:
            return
        features, labels = self._features, self._labels
        self._features, self._labels, self._chunk = [], [], None
        if not features or not math.isfinite(result.loss):
            return
        top1 = self.probe.step(torch.cat(features), torch.cat(labels))
        if is_record_step(run.state.global_step, run.state.total_steps, self.log_every):
            result.logs["online_linear_train_top1"] = top1

    def test_scores(self, test: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, float]:
        """``{"online_linear_top1": ...}`` on ``(features, labels)`` of the monitor's test data
        (``{}`` when the probe is off or no features are given)."""
        if self.probe is None or test is None:
            return {}
        return {"online_linear_top1": self.probe.top1(*test)}

    def state_dict(self) -> dict[str, Any]:
        """The probe's state (``{}`` when it is off)."""
        return self.probe.state_dict() if self.probe is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restored when the probe is built at fit start (``{}``: it starts fresh)."""
        self._pending = state or None

    def teardown(self, run: Run) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
