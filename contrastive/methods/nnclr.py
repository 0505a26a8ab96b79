"""NNCLR (Dwibedi, Aytar, Tompson, Sermanet, Zisserman 2021, arXiv:2104.14548) as a method.

One encoder: backbone f, projector g (the recipe's ``head``) and prediction head h (the recipe's
``predictor``).  For the two views of an image, ``z_i = g(f(x_i)) / ‖g(f(x_i))‖`` and
``p_i = h(g(f(x_i)))``.  The positive of an image is not its other view but the *nearest
neighbour* NN(z_i) of its projection in a support set Q, a queue of the normalised projections
of past batches (cosine similarity, [`FeatureQueue.nearest`][contrastive.methods.memory.FeatureQueue.nearest]); the other images of the batch
are the negatives.  The loss is the paper's (its Algorithm 1, the form solo-learn's
``nnclr_loss_func`` implements)::

    L(nn, p) = −(1/n) Σ_i log  exp(n̂n_i · p̂_i / τ) / Σ_k exp(n̂n_i · p̂_k / τ)      (hats: L2-normalised)
    loss     = L(NN(z_1), p_2) / 2 + L(NN(z_2), p_1) / 2

a cross-entropy over the rows of ``nn @ p.T / τ`` with the positives on the diagonal.  This is
*not* lightly's form (``NTXentLoss(nn, p)``, a SimCLR loss over the 2n rows of nn and p, whose
negatives include the other neighbours and the other predictions): the paper's negatives are the
predictions of the other images only.  The neighbours carry no gradient (they are queue rows);
the gradient reaches the encoder through the predictions.  Paper defaults: τ = 0.1, a support
set of 98,304, projector 3 layers [2048, 2048, 256], predictor 2 layers [4096, 256].

The empty support set.  Before the first push (the first step of a run) Q is empty; that step
uses z_i itself (detached) as its "neighbour", so it is a contrastive step with the other view's
prediction as the positive (SimCLR-like with a predictor) instead of no step at all.  From the
first push on, the neighbours come from the filled rows of the queue only, never from the
zeroed rows past its fill.

The global batch.  The negatives are the predictions of the *global* batch: every process
gathers ``p`` from all processes **with** gradient ([`contrastive.distributed.gather_with_grad`][contrastive.distributed.gather_with_grad]),
each local row's positive sits at ``rank·n + i``, and each process's loss is the mean over its
own rows, so the DDP average over processes is exactly the loss (and gradient) of one process
on the whole batch.  (solo-learn's first version computed the loss per GPU against the local
predictions only, issue #229: the number of negatives, and so the loss, then depended on the
number of GPUs; it now gathers ``p`` the same way.)  The support set is the same on every
process, since every push gathers all processes' projections in rank order.

The queue is pushed in ``after_step`` with the normalised projections z_1 of the **first view**
of every image of the whole step (every chunk under ``trainer.accumulate``, each once), as the
paper's Algorithm 1 does (``update_queue(Q, z1)``; solo-learn too).  Unlike the paper's TPU
code no ``queue_size % batch == 0`` is needed: the queue is a ring buffer that wraps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastive import diagnostics, hookimpl
from contrastive.bounds import check_arguments
from contrastive.distributed import gather_with_grad, rank
from contrastive.errors import RecipeError
from contrastive.methods.base import Batch, Method, Outputs, embed_views, head_out_dim
from contrastive.methods.memory import FeatureQueue

if TYPE_CHECKING:
    from contrastive.registry import Registries


class NNCLR(Method):
    """NNCLR: the support-set nearest neighbour of a view's projection is the positive of the
    other view's prediction, the other images of the global batch its negatives.

    Args:
        backbone, head, predictor: f, the projector g and the prediction head h (injected; the
            predictor's ``in_dim`` is the head's ``out_dim``, and its ``out_dim``, where it has one,
            must equal the head's: predictions are compared with projections).
        queue_size: projections kept in the support set (ring buffer; any positive size).
        temperature: τ > 0 of the loss.

    ``forward`` -> ``{"z": (B, 2, D), "p": (B, 2, D)}``: ``z[:, i]`` the normalised projection of
    view ``i``, ``p[:, i]`` its prediction (not normalised).
    """

    views = 2
    conformance_args = {"queue_size": 32}  # noqa: RUF012  the suite's 90 images push 80 projections an epoch
    arg_bounds: ClassVar[dict[str, dict[str, float]]] = {"queue_size": {"min": 1}, "temperature": {"gt": 0}}
    family = "contrastive (nearest-neighbour positives)"
    _name = "nnclr"

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        predictor: nn.Module,
        queue_size: int = 98304,
        temperature: float = 0.1,
    ) -> None:
        super().__init__()
        check_arguments(self._name, NNCLR, queue_size=queue_size, temperature=temperature)
        dim = head_out_dim(head, self._name, "the projection size")
        predicted = getattr(predictor, "out_dim", dim)
        if predicted != dim:
            raise RecipeError(f"{self._name}: the predictor's out_dim {predicted} must equal the head's out_dim {dim} "
                              f"(predictions are contrasted with projections); set --predictor.args.out_dim {dim}")
        self.backbone = backbone  # attribute names: checkpoints hold backbone.*, head.*, predictor.*, queue.*
        self.head = head
        self.predictor = predictor
        self.queue = FeatureQueue(queue_size, dim)
        self.temperature = float(temperature)

    def check_data(self, num_samples: int, global_batch: int) -> None:
        self.queue.check_fits_an_epoch(
            num_samples, global_batch, rows="projections",
            why="the support set would hold older projections of the very images it looks up",
        )

    def forward(self, views: list[Tensor], batch: Batch) -> Outputs:
        projections = embed_views(nn.Sequential(self.backbone, self.head), views)  # (B, 2, D), one pass
        b, v, d = projections.shape
        p = self.predictor(projections.transpose(0, 1).reshape(v * b, d))  # view-major, as the projections' pass
        return {"z": F.normalize(projections, dim=-1), "p": p.reshape(v, b, -1).transpose(0, 1)}

    def neighbours(self, z: Tensor) -> Tensor:
        """``(n, D)`` -> ``(n, D)``: the support-set nearest neighbour of each row of ``z`` (no
        gradient), or ``z`` itself detached while the support set is empty."""
        z = z.detach()
        return self.queue.nearest(z) if len(self.queue) > 0 else z

    def _contrast(self, nn_local: Tensor, p_global: Tensor) -> Tensor:
        """Cross-entropy of ``n̂n @ p̂ᵀ / τ`` over the local rows, positives at ``rank·n + i``."""
        logits = F.normalize(nn_local.to(p_global.dtype), dim=1) @ p_global.T / self.temperature
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        target = torch.arange(nn_local.shape[0], device=logits.device) + rank() * nn_local.shape[0]
        return F.cross_entropy(logits, target)

    def loss(self, outputs: Outputs, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        z, p = outputs["z"], outputs["p"]
        p_global = gather_with_grad(F.normalize(p, dim=-1))  # (world·n, 2, D), rank order, with gradient
        nn_1, nn_2 = self.neighbours(z[:, 0]), self.neighbours(z[:, 1])
        loss = self._contrast(nn_1, p_global[:, 1]) / 2 + self._contrast(nn_2, p_global[:, 0]) / 2
        logs = {"queue_fill": len(self.queue) / self.queue.size}
        if diagnostics.requested():  # anchors: the neighbours; candidates: every process's predictions of the other view
            tally = (diagnostics.key_tally(nn_1, p[:, 1], self.temperature, embeddings=z[:, 0])
                     + diagnostics.key_tally(nn_2, p[:, 0], self.temperature, embeddings=z[:, 1]))
            logs.update(tally.result())
        return loss, logs

    def after_step(self, outputs: Outputs, batch: Batch, step: int, total_steps: int) -> None:
        self.queue.push(outputs["z"][:, 0].detach())  # the first view's projections, as the paper


@hookimpl
def contrastive_register(registries: Registries):
    registries.methods.register("nnclr", NNCLR)
