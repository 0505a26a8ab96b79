"""SwAV (Caron, Misra, Mairal, Goyal, Bojanowski, Joulin 2020, arXiv:2006.09882) as a method.

"Swapping assignments between views": one encoder — backbone f and projection MLP g (the recipe's
``head:``) — and K prototypes ``c_k`` (a ``(K, D)`` weight of unit rows, trained).  Every view v
of an image gives ``z_v = g(f(x_v)) / ‖g(f(x_v))‖`` and its scores ``s_v = C z_v`` ``(K,)``.  For
each of the first ``assign_views`` views (the global crops: views 0 and 1), the codes
``q_i = SinkhornKnopp(s_i)`` (no gradient; [`sinkhorn_knopp`][contrastive.methods.sinkhorn.sinkhorn_knopp]) split the
*global* batch equally among the prototypes; every other view predicts them::

    p_v = softmax(s_v / τ)
    loss = 1/|A| Σ_{i ∈ A}  1/(V − 1) Σ_{v ≠ i}  mean_b  −Σ_k q_i[b, k] log p_v[b, k]

with A the assignment views and V all views (2 global + the local crops of multi-crop: the
recipe's ``views:`` groups, the global group first), exactly the official ``main_swav.py``
loss.  Paper defaults: K = 3000, τ = 0.1, ε = 0.05, 3 Sinkhorn iterations, head 2048 → 128.

The prototypes.  They are L2-normalised at construction and after every applied optimiser step
(`SwAV.after_step`; the official code normalises them before each forward, the same sequence of
values), never inside ``forward``, which must be pure.  For the first ``freeze_prototypes_epochs``
epochs (one in the paper) they do not learn: ``forward`` uses their detached value while the
buffer ``last_step`` (the last applied step) is within the frozen steps, so their gradient is 0.
They stay in the graph — DDP requires every trainable parameter to take part in each backward —
and their zero gradient leaves them where they are (the optimiser's weight decay only rescales
them, and the normalisation after the step undoes that).  The official code sets their gradient
to None instead, outside the model; a method has no hook there.

The queue (small batches).  With ``queue_size`` > 0, from epoch ``queue_start_epochs`` (15 in the
paper's batch-256 setting) on, each assignment view's normalised embeddings ``z_i`` of every
process are pushed after each applied step into a queue of its own
([`FeatureQueue`][contrastive.methods.memory.FeatureQueue], the same on every process, as MoCo's).  Once a queue is full its rows,
scored against the current prototypes, join the Sinkhorn input of their view as extra samples
(so the equipartition is over the batch and the queue); only the batch's codes are used, as in
the official code.  Each process contributes an equal share of the queue's rows to the global
problem, so each row counts once whatever the number of processes.

The global batch.  Sinkhorn-Knopp all-reduces the prototypes' sums of every iteration over the
processes (the official ``distributed_sinkhorn``); the cross-entropy is a mean over this process's
samples, so DDP's mean over processes is the loss (and gradient) of one process on the whole
batch (``tests/methods/test_swav_distributed.py``).  Without the all-reduce every process would
equipartition its own shard: a different objective, whose codes depend on the number of GPUs.

Settings in epochs (the freeze, the queue's start) are converted into steps by
`SwAV.set_training_length`; outside a run (never told the run's length) nothing is frozen
and a queue fills from the first push.

Shapes.  ``forward(views, batch)`` -> ``{"scores": (B, V, K), "z": (B, V, D)}``: the scores with
gradient (in float32 or wider: a bf16 score divided by ε = 0.05 would carry an error of several
percent into ``exp``), the normalised embeddings detached (queue pushes and diagnostics).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastive import diagnostics, hookimpl
from contrastive.bounds import check_arguments
from contrastive.distributed import is_distributed, rank, world_size
from contrastive.errors import RecipeError
from contrastive.methods.base import Batch, Method, Outputs, embed_views, head_out_dim
from contrastive.methods.memory import FeatureQueue
from contrastive.methods.sinkhorn import sinkhorn_knopp

if TYPE_CHECKING:
    from contrastive.registry import Registries


def swapped_prediction_loss(scores: Tensor, codes: Sequence[Tensor], temperature: float) -> Tensor:
    """The SwAV loss of ``scores`` ``(n, V, K)`` given the ``codes`` ``(n, K)`` of views 0 .. len(codes) − 1:
    the mean over those views i of the mean over the other views v of the cross-entropy
    ``−Σ_k q_i log softmax(s_v / τ)``, averaged over the n samples.  In float32 or wider, autocast off."""
    dtype = torch.promote_types(scores.dtype, torch.float32)
    with torch.autocast(device_type=scores.device.type, enabled=False):
        log_p = F.log_softmax(scores.to(dtype) / temperature, dim=2)  # (n, V, K)
        views = scores.shape[1]
        terms = []
        for i, q in enumerate(codes):
            others = [v for v in range(views) if v != i]
            terms.append(-(q.to(dtype)[:, None] * log_p[:, others]).sum(dim=2).mean())
        return torch.stack(terms).mean()


class SwAV(Method):
    """SwAV: swapped prediction of Sinkhorn-Knopp cluster assignments over the global batch.

    Args:
        backbone, head: f and the projection MLP g (injected; its ``out_dim`` is the prototypes' D).
        prototypes: K, the number of prototypes (3000 for ImageNet; a few times the classes on small data).
        temperature: τ > 0 of the predictions' softmax (0.1).
        epsilon: ε > 0 of Sinkhorn-Knopp (0.05); smaller: harder assignments.
        sinkhorn_iterations: Sinkhorn-Knopp iterations (3).
        freeze_prototypes_epochs: the prototypes get no gradient during this many epochs from the
            start (1 in the paper; fractions of an epoch allowed; 0: never frozen).
        queue_size: rows of each assignment view's queue (0: no queue; 3840 in the paper's
            batch-256 setting).
        queue_start_epochs: the queue is filled from this epoch on, and used once full (15).
        assign_views: the views whose codes are predicted: the first ``assign_views`` views, which
            must be the recipe's first (global) view group (2).

    ``forward`` -> ``{"scores": (B, V, K), "z": (B, V, D)}``; ``loss`` -> the swapped-prediction
    loss; ``after_step`` normalises the prototypes, pushes the queues and records the step.
    """

    views = 2
    conformance_args = {  # noqa: RUF012  the suite's 4-step fit, 5 steps an epoch: frozen for 2, a queue full by step 4
        "prototypes": 10, "freeze_prototypes_epochs": 0.4, "queue_size": 16, "queue_start_epochs": 0.2,
    }
    arg_bounds: ClassVar[dict[str, dict[str, float]]] = {
        "prototypes": {"min": 1}, "temperature": {"gt": 0}, "epsilon": {"gt": 0}, "sinkhorn_iterations": {"min": 1},
        "freeze_prototypes_epochs": {"min": 0}, "queue_size": {"min": 0}, "queue_start_epochs": {"min": 0},
        "assign_views": {"min": 1},
    }
    family = "clustering (swapped assignments, no negatives)"
    _name = "swav"

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        prototypes: int = 3000,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        freeze_prototypes_epochs: float = 1.0,
        queue_size: int = 0,
        queue_start_epochs: float = 15.0,
        assign_views: int = 2,
    ) -> None:
        super().__init__()
        check_arguments(self._name, SwAV, prototypes=prototypes, temperature=temperature, epsilon=epsilon,
                        sinkhorn_iterations=sinkhorn_iterations, freeze_prototypes_epochs=freeze_prototypes_epochs,
                        queue_size=queue_size, queue_start_epochs=queue_start_epochs, assign_views=assign_views)
        dim = head_out_dim(head, self._name, "the prototypes' dimension")
        self.backbone = backbone  # checkpoints hold backbone.*, head.*, prototypes.*, queues.*, last_step
        self.head = head
        self.prototypes = nn.Linear(dim, int(prototypes), bias=False)
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        self.queues = nn.ModuleList([FeatureQueue(queue_size, dim) for _ in range(assign_views)] if queue_size else [])
        self.register_buffer("last_step", torch.zeros((), dtype=torch.int64))  # the last applied step (0: none)
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.sinkhorn_iterations = int(sinkhorn_iterations)
        self.freeze_prototypes_epochs = float(freeze_prototypes_epochs)
        self.queue_start_epochs = float(queue_start_epochs)
        self.assign_views = int(assign_views)
        self.frozen_steps = 0  # set_training_length converts the epochs settings; 0 outside a run
        self.queue_start_step = 0

    # -- settings in epochs ------------------------------------------------------------------------
    def set_training_length(self, steps_per_epoch: int, total_steps: int) -> None:
        super().set_training_length(steps_per_epoch, total_steps)
        self.frozen_steps = round(self.freeze_prototypes_epochs * self.steps_per_epoch)
        self.queue_start_step = round(self.queue_start_epochs * self.steps_per_epoch)
        if self.queues and self.queue_start_step >= self.total_steps:
            warnings.warn(
                f"swav: the queue starts at epoch {self.queue_start_epochs:g} (step {self.queue_start_step}), after "
                f"this run's {self.total_steps} steps: it is never used; start it earlier with "
                f"--method.args.queue_start_epochs, or drop it with --method.args.queue_size 0", stacklevel=2)

    def check_views(self, counts: Sequence[int]) -> None:
        if sum(counts) < 2:
            raise RecipeError(f"swav needs at least 2 views per image (one predicts the other's codes), the recipe "
                              f"gives {sum(counts)}")
        if counts[0] < self.assign_views:
            raise RecipeError(
                f"swav computes codes for the first {self.assign_views} views, which must be the recipe's first "
                f"(global) view group, but that group has {counts[0]} views (groups: {list(counts)}); set "
                f"--method.args.assign_views {min(counts[0], 2)} or give the first group more views"
            )

    # -- forward (pure) --------------------------------------------------------------------------------
    def prototypes_frozen(self) -> Tensor:
        """0-d bool: the step about to run is one of the first ``frozen_steps`` (read from state)."""
        return self.last_step < self.frozen_steps

    def embed(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, D)``: ``g(f(x))``, L2-normalised."""
        return F.normalize(self.head(self.backbone(x)), dim=1)

    def forward(self, views: list[Tensor], batch: Batch) -> Outputs:
        z = embed_views(self.embed, views).contiguous()  # (B, V, D)
        weight = self.prototypes.weight
        weight = torch.where(self.prototypes_frozen(), weight.detach(), weight)  # zero gradient while frozen
        dtype = torch.promote_types(z.dtype, torch.float32)
        rows, count, dim = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):
            # one 2-d product: a batched matmul may fold differently with and without grad (GradCache's two passes)
            scores = (z.to(dtype).reshape(rows * count, dim) @ weight.to(dtype).T).reshape(rows, count, -1)
        return {"scores": scores, "z": z.detach()}

    # -- loss (reads the queues, writes nothing) -----------------------------------------------------------
    def queue_scores(self, view: int) -> Tensor | None:
        """This process's share of the full queue of assignment view ``view`` scored against the
        current prototypes, ``(m, K)`` without gradient; None while the queue is not full (or absent)."""
        if not self.queues or len(self.queues[view]) < self.queues[view].size:
            return None
        rows = torch.tensor_split(self.queues[view].read(), world_size())[rank()]
        weight = self.prototypes.weight.detach()
        return rows.to(weight.dtype) @ weight.T

    def codes(self, scores: Tensor) -> list[Tensor]:
        """``[(n, K)] × assign_views``: the Sinkhorn-Knopp codes of this process's samples for each
        assignment view, over the global batch (and the view's queue once it is full)."""
        found = []
        for view in range(self.assign_views):
            rows = scores[:, view].detach()
            queued = self.queue_scores(view)
            if queued is not None:
                rows = torch.cat([queued.to(rows.dtype), rows])
            found.append(sinkhorn_knopp(rows, self.epsilon, self.sinkhorn_iterations)[-scores.shape[0]:])
        return found

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor | tuple[Tensor, dict[str, float]]:
        scores = outputs["scores"]
        codes = self.codes(scores)
        loss = swapped_prediction_loss(scores, codes, self.temperature)
        if not diagnostics.requested():
            return loss
        logs = diagnostics.embedding_tally(outputs["z"]).result()
        logs.update(assignment_statistics(scores[:, : self.assign_views].detach(), codes))
        if self.queues:
            logs["queue_fill"] = len(self.queues[0]) / self.queues[0].size
        return loss, logs

    # -- after each applied step ---------------------------------------------------------------------
    @torch.no_grad()
    def after_step(self, outputs: Outputs, batch: Batch, step: int, total_steps: int) -> None:
        weight = self.prototypes.weight
        weight.copy_(F.normalize(weight, dim=1))
        if self.queues and step > self.queue_start_step:
            z = outputs["z"]
            for view, queue in enumerate(self.queues):
                queue.push(z[:, view])  # every process's rows in rank order: the same queue everywhere
        self.last_step.fill_(step)


def assignment_statistics(scores: Tensor, codes: Sequence[Tensor]) -> dict[str, float]:
    """Two numbers about the prototypes, over the global batch (one all-reduce; every process
    must call it): ``prototype_usage``, the share of the K prototypes that are the best-scoring
    prototype of at least one assignment view of one sample (1/K: collapse onto one prototype), and
    ``code_entropy``, the mean entropy of the samples' codes divided by log K (1: uniform codes that
    say nothing; near 0: hard assignments).  ``scores`` ``(n, A, K)``; ``codes`` A × ``(n, K)``."""
    with torch.no_grad(), torch.autocast(device_type=scores.device.type, enabled=False):
        k = scores.shape[-1]
        best = torch.bincount(scores.argmax(dim=-1).reshape(-1), minlength=k).to(torch.float64)
        q = torch.cat(list(codes)).to(torch.float64)
        entropy = -(q * torch.log(q.clamp_min(1e-300))).sum(dim=1)
        sums = torch.cat([best, torch.stack([entropy.sum(), torch.tensor(float(q.shape[0]), dtype=torch.float64,
                                                                            device=q.device)])])
        if is_distributed():
            torch.distributed.all_reduce(sums)
        usage = float((sums[:k] > 0).to(torch.float64).mean())
        spread = float(sums[k] / sums[k + 1]) / math.log(k) if k > 1 and float(sums[k + 1]) else 0.0
    return {"prototype_usage": usage, "code_entropy": spread}


@hookimpl
def contrastive_register(registries: Registries):
    registries.methods.register("swav", SwAV)
