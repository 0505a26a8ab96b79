"""MoCo v2 (Chen, Fan, Girshick, He 2020, arXiv:2003.04297) as a method.

A query encoder (backbone f + MLP head g, trained) and a key encoder (a momentum copy of f + g,
``k-params ← m·k-params + (1 − m)·q-params`` after every applied step).  View 0 of an image
gives the query ``q``, view 1 the key ``k`` (both L2-normalised); the positive of ``q`` is the
key of the same image, the negatives are the queue of keys of past batches (InfoNCE at
temperature τ)::

    loss = −log  exp(q·k₊/τ) / (exp(q·k₊/τ) + Σ_{n ∈ queue} exp(q·n/τ)),  mean over the queries

With ``symmetric: true`` view 1 is also a query whose key comes from view 0, and the loss is
the mean of the two directions (MoCo v3's symmetrised loss); both keys of each image are then
pushed.  Paper defaults: queue 65,536, m = 0.999, τ = 0.2, MLP head 2048 → 128.

Negatives and processes.  The queue is pushed in ``after_step`` with the keys of the whole step
(every chunk under ``trainer.accumulate``, each key once) gathered from every process in rank
order, so every process holds the same queue; the positive key is local.  Each process's loss
is the mean over its own queries, so the mean over processes (DDP) is the loss of one process
on the global batch.  Before the first push the queue is empty; those first steps use, instead
of the queue, the keys of the other images of the *global* batch (gathered without gradient
from every process) as negatives, so that the first step is already a contrastive one.  Once
anything is pushed the negatives come from the queue only, as in the paper.  Keys never carry a
gradient.  Unlike the official code, no ``queue_size % batch == 0`` is needed: the queue is a
ring buffer that wraps.

BatchNorm.  The key encoder follows the method's train/eval mode: in training it normalises with
the statistics of the batch it encodes.  MoCo's official code shuffles the keys' batch across
GPUs ("shuffle BN") so that batch statistics cannot leak which query matches which key; here
the supported remedy with several processes is ``trainer.sync_batchnorm: true``
(SyncBatchNorm, GPU), which computes the statistics over the whole global batch.  On one
process the key encoder's batch statistics are those of the local batch (as in lightly's
examples); no partial shuffle is implemented.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastive import diagnostics, hookimpl
from contrastive.bounds import check_arguments
from contrastive.distributed import all_gather_no_grad, rank
from contrastive.methods.base import Batch, Method, Outputs, head_out_dim
from contrastive.methods.memory import FeatureQueue, MomentumEncoder, momentum_schedule

if TYPE_CHECKING:
    from contrastive.registry import Registries


class MoCo(Method):
    """MoCo v2: query encoder ``g(f(x))``, momentum key encoder, queue of past keys as negatives.

    Args:
        backbone, head: the query encoder (injected); the key encoder is a momentum copy of both.
        queue_size: keys kept as negatives (ring buffer; any positive size, no divisibility).
        momentum: the key encoder's EMA coefficient m, in [0, 1) (constant, as in the paper).
        temperature: τ > 0 of the InfoNCE loss.
        symmetric: also use view 1 as a query (key from view 0); the loss is the mean of both.

    ``forward`` -> ``{"q": (B, Vq, D), "k": (B, Vq, D)}`` with ``Vq`` = 1 (2 when symmetric):
    ``q[:, i]`` the normalised query of view ``i``, ``k[:, i]`` its positive key (of the other
    view), computed without gradient.
    """

    views = 2
    conformance_args = {"queue_size": 32}  # noqa: RUF012  the suite's 90 images push 80 keys an epoch
    arg_bounds: ClassVar[dict[str, dict[str, float]]] = {
        "queue_size": {"min": 1}, "momentum": {"min": 0, "lt": 1}, "temperature": {"gt": 0},
    }
    family = "contrastive (queue of negatives, momentum keys)"
    _name = "moco"

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        queue_size: int = 65536,
        momentum: float = 0.999,
        temperature: float = 0.2,
        symmetric: bool = False,
    ) -> None:
        super().__init__()
        check_arguments(self._name, MoCo, queue_size=queue_size, momentum=momentum, temperature=temperature)
        dim = head_out_dim(head, self._name, "the key dimension")
        self.backbone = backbone  # attribute names: checkpoints hold backbone.* and head.*
        self.head = head
        self.key_encoder = MomentumEncoder(nn.Sequential(backbone, head))
        self.queue = FeatureQueue(queue_size, dim)
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.symmetric = bool(symmetric)

    @property
    def keys_per_image(self) -> int:
        """Keys each image pushes per step (2 when symmetric)."""
        return 2 if self.symmetric else 1

    def query_encoder(self) -> nn.Module:
        """The trained encoder ``g∘f`` as one module, parameter names matching the key encoder's."""
        return nn.Sequential(self.backbone, self.head)

    def encode(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, D)``: the normalised query ``g(f(x)) / ‖g(f(x))‖``."""
        return F.normalize(self.head(self.backbone(x)), dim=1)

    @torch.no_grad()
    def encode_key(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, D)``: the normalised key of the momentum encoder, no gradient."""
        return F.normalize(self.key_encoder(x), dim=1)

    def check_data(self, num_samples: int, global_batch: int) -> None:
        self.queue.check_fits_an_epoch(
            num_samples, global_batch, per_image=self.keys_per_image, rows="keys",
            detail=" × 2 keys (symmetric)" if self.symmetric else "",
            why="the queue would hold older keys of the very images it contrasts as negatives",
        )

    def forward(self, views: list[Tensor], batch: Batch) -> Outputs:
        pairs = [(0, 1), (1, 0)] if self.symmetric else [(0, 1)]
        q = torch.stack([self.encode(views[i]) for i, _ in pairs], dim=1)
        k = torch.stack([self.encode_key(views[j]) for _, j in pairs], dim=1)
        return {"q": q, "k": k}

    def loss(self, outputs: Outputs, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        q, k = outputs["q"], outputs["k"].detach()
        negatives = self.queue.read()
        terms = [self._info_nce(q[:, i], k[:, i], negatives) for i in range(q.shape[1])]
        loss = terms[0] if len(terms) == 1 else torch.stack(terms).mean()
        logs = {"queue_fill": len(negatives) / len(self.queue.keys)}
        if diagnostics.requested():  # the candidates of the loss: each query's key, and the queue (or the batch's keys)
            tallies = [diagnostics.key_tally(q[:, i], k[:, i], self.temperature, negatives) for i in range(q.shape[1])]
            logs.update(sum(tallies[1:], tallies[0]).result())
        return loss, logs

    def _info_nce(self, q: Tensor, k: Tensor, negatives: Tensor) -> Tensor:
        """InfoNCE of queries ``q`` ``(n, D)`` with positives ``k`` ``(n, D)``: against the queue's
        ``negatives`` ``(M, D)``, or, while it is empty, against the other keys of the global batch."""
        if negatives.shape[0] > 0:
            positive = (q * k.to(q.dtype)).sum(dim=1, keepdim=True)
            logits = torch.cat([positive, q @ negatives.to(q.dtype).T], dim=1) / self.temperature
            target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        else:
            keys = all_gather_no_grad(k)  # (world·n, D) in rank order; this rank's rows are its positives
            logits = (q @ keys.to(q.dtype).T) / self.temperature
            target = torch.arange(q.shape[0], device=q.device) + rank() * q.shape[0]
        return F.cross_entropy(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, target)

    def after_step(self, outputs: Outputs, batch: Batch, step: int, total_steps: int) -> None:
        self.key_encoder.update(self.query_encoder(), momentum_schedule(step, total_steps, self.momentum))
        k = outputs["k"].detach()
        for view in range(k.shape[1]):  # one push per view: every process's k[:, 0] (rank order), then k[:, 1], ...
            self.queue.push(k[:, view])  # the one-process order, so W processes queue exactly what one would

    def trainable_parameters(self) -> Iterable[tuple[str, nn.Parameter]]:
        return [(name, p) for name, p in self.named_parameters()
                if p.requires_grad and not name.startswith("key_encoder.")]


@hookimpl
def contrastive_register(registries: Registries):
    registries.methods.register("moco", MoCo)
