"""MoCo v3 (Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision
Transformers", arXiv:2104.02057) as a method.

A query encoder — backbone f, projection head g (the recipe's ``head:``) and prediction head h
(the recipe's ``predictor:``), trained — and a momentum encoder, an EMA copy of f + g only (no
predictor).  Both views of an image are queries, and each is contrasted with the momentum key of
the *other* view among the keys of the whole global batch (no queue)::

    q_v = h(g(f(x_v))),   k_v = g_m(f_m(x_v))            v = 1, 2
    ctr(q, k) = CE(normalize(q) · normalize(k_global)ᵀ / τ, positives on the diagonal) · 2τ
    loss = ctr(q_1, k_2) + ctr(q_2, k_1)

as the official code computes it (``facebookresearch/moco-v3``, ``moco/builder.py``,
``MoCo.contrastive_loss`` — ``ctr_loss`` in early versions —: ``nn.CrossEntropyLoss()(logits,
labels) * (2 * self.T)`` with ``labels = arange(N) + N · rank``; the
``2τ`` factor only rescales the gradient so that the lr needs no retuning when τ changes).
Paper defaults (ViT): τ = 0.2, m from 0.99 to 1 on a cosine schedule over training.

Shapes.  ``forward(views, batch)`` -> ``{"q": (B, 2, D), "k": (B, 2, D)}``: ``q[:, v]`` the
(unnormalised) prediction of view ``v``, ``k[:, v]`` the momentum encoder's (unnormalised) key of
view ``v``, computed under ``no_grad`` (keys never require grad).  Each view goes through the
encoders in its own pass, as in the official code, so BatchNorm statistics are per view.

Keys of the global batch, without gradient.  Each process's queries are contrasted with the keys
of every process (``all_gather_no_grad``, rank order; this process's positives sit at offset
``rank · n``), as the official ``concat_all_gather`` does.  Keys carry no gradient by design (they
are the momentum encoder's targets), so a gradient-free gather loses nothing.  Each process's
loss is the mean over its own queries, so the mean over processes (DDP) equals the loss of one
process on the global batch.  The logits are computed in float32 under bf16/fp16 autocast (float64
stays float64).

Momentum update.  The official code updates the momentum encoder at the start of ``forward``;
here ``forward`` is pure (``trainer.accumulate`` replays it under GradCache), so the update
``p_m ← m·p_m + (1 − m)·p`` runs once per applied optimiser step in `MoCoV3.after_step`,
with ``m = momentum_schedule(step, total_steps, momentum, final_momentum, "cosine")``.

Not reproduced: the paper's frozen random patch projection for ViT (a backbone option, not a
method one) and the projection/prediction heads' final BatchNorm without affine parameters
(the ``mlp`` head's ``last_batch_norm`` is affine).
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
from contrastive.errors import InvalidArgumentsError
from contrastive.methods.base import Batch, Method, Outputs
from contrastive.methods.memory import MomentumEncoder, momentum_schedule

if TYPE_CHECKING:
    from contrastive.registry import Registries


class MoCoV3(Method):
    """MoCo v3: queries ``h(g(f(x)))``, keys from a momentum copy of ``g∘f``, symmetric InfoNCE
    over the global batch's keys (see the module docstring).

    Args:
        backbone, head, predictor: the query encoder f, g and the prediction head h (injected;
            the predictor is required, built with ``in_dim`` = the head's ``out_dim``).  The
            momentum encoder is a copy of f and g.
        temperature: τ > 0 (0.2 in the paper for ViT).
        momentum: the EMA coefficient m at step 0 (0.99 in the paper).
        final_momentum: m at the last step, reached on a cosine schedule (1.0 in the paper);
            ``0 <= momentum <= final_momentum <= 1`` (equal values: a constant m).

    ``forward`` -> ``{"q": (B, 2, D), "k": (B, 2, D)}``; ``loss`` -> ``ctr(q1, k2) + ctr(q2, k1)``
    (with the diagnostics on recorded steps); ``after_step`` moves the momentum encoder.
    """

    views = 2
    arg_bounds: ClassVar[dict[str, dict[str, float]]] = {
        "temperature": {"gt": 0}, "momentum": {"min": 0, "max": 1}, "final_momentum": {"min": 0, "max": 1},
    }
    family = "contrastive (momentum keys, global batch)"
    _name = "moco_v3"

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        predictor: nn.Module,
        temperature: float = 0.2,
        momentum: float = 0.99,
        final_momentum: float = 1.0,
    ) -> None:
        super().__init__()
        check_arguments(self._name, MoCoV3, temperature=temperature, momentum=momentum, final_momentum=final_momentum)
        if float(momentum) > float(final_momentum):  # a relation of two arguments, beyond each one's range
            raise InvalidArgumentsError(
                f"{self._name}: momentum must be at most final_momentum (m only grows towards it), "
                f"got momentum {momentum}, final_momentum {final_momentum}"
            )
        self.backbone = backbone  # attribute names: checkpoints hold backbone.*, head.*, predictor.*
        self.head = head
        self.predictor = predictor
        self.momentum_encoder = MomentumEncoder(nn.Sequential(backbone, head))
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.final_momentum = float(final_momentum)

    def base_encoder(self) -> nn.Module:
        """``g∘f`` as one module, parameter names matching the momentum encoder's."""
        return nn.Sequential(self.backbone, self.head)

    def encode(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, D)``: the query ``h(g(f(x)))`` (not normalised)."""
        return self.predictor(self.head(self.backbone(x)))

    @torch.no_grad()
    def encode_key(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, D)``: the momentum encoder's key (not normalised), no gradient."""
        return self.momentum_encoder(x)

    def momentum_at(self, step: int, total_steps: int) -> float:
        """The EMA coefficient after applied step ``step`` (1-based) of ``total_steps``."""
        return momentum_schedule(step, total_steps, self.momentum, self.final_momentum, schedule="cosine")

    def forward(self, views: list[Tensor], batch: Batch) -> Outputs:
        q = torch.stack([self.encode(view) for view in views[:2]], dim=1)
        k = torch.stack([self.encode_key(view) for view in views[:2]], dim=1)
        return {"q": q, "k": k}

    def loss(self, outputs: Outputs, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        q, k = outputs["q"], outputs["k"].detach()
        loss = self._contrastive(q[:, 0], k[:, 1]) + self._contrastive(q[:, 1], k[:, 0])
        if not diagnostics.requested():
            return loss
        tally = diagnostics.key_tally(q[:, 0], k[:, 1], self.temperature) + diagnostics.key_tally(q[:, 1], k[:, 0], self.temperature)
        return loss, tally.result()

    def _contrastive(self, q: Tensor, k: Tensor) -> Tensor:
        """``ctr(q, k)`` of this process's queries ``q`` ``(n, D)`` against the keys of every
        process (``k`` ``(n, D)`` here, gathered without gradient), times ``2τ``."""
        dtype = torch.promote_types(q.dtype, torch.float32)
        with torch.autocast(device_type=q.device.type, enabled=False):
            queries = F.normalize(q.to(dtype), dim=1)
            keys = F.normalize(all_gather_no_grad(k.detach()).to(dtype), dim=1)  # (world·n, D), rank order
            logits = queries @ keys.T / self.temperature
            target = torch.arange(q.shape[0], device=q.device) + rank() * q.shape[0]
            return F.cross_entropy(logits, target) * (2 * self.temperature)

    def after_step(self, outputs: Outputs, batch: Batch, step: int, total_steps: int) -> None:
        self.momentum_encoder.update(self.base_encoder(), self.momentum_at(step, total_steps))

    def trainable_parameters(self) -> Iterable[tuple[str, nn.Parameter]]:
        return [(name, p) for name, p in self.named_parameters()
                if p.requires_grad and not name.startswith("momentum_encoder.")]


@hookimpl
def contrastive_register(registries: Registries):
    registries.methods.register("moco_v3", MoCoV3)
