"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent", arXiv:2006.07733) as a method.

An online network — backbone f, projector g (the recipe's ``head:``) and predictor q (the
recipe's ``predictor:``), trained — and a target network, an EMA copy of f + g (no predictor)
that receives no gradient.  Each view's prediction regresses the target projection of the
*other* view; no negatives::

    p_v = q(g(f(x_v))),   t_v = g_ξ(f_ξ(x_v))             v = 1, 2      (t: no gradient)
    L(p, t) = ‖p/‖p‖ − t/‖t‖‖² = 2 − 2·cos(p, t)           mean over the samples
    loss = L(p_1, t_2) + L(p_2, t_1)                        (the paper's symmetrised loss)

Target update ``ξ ← τ·ξ + (1 − τ)·θ`` once per applied optimiser step (`BYOL.after_step`),
τ from ``momentum`` (0.996) to ``final_momentum`` (1) on the cosine schedule of
[`contrastive.methods.memory.momentum_schedule`][contrastive.methods.memory.momentum_schedule], as the paper's
``τ = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2``.

Shapes.  ``forward(views, batch)`` -> ``{"p": (B, 2, D), "t": (B, 2, D), "z": (B, 2, D)}``: the
online predictions (with gradient), the target projections (no gradient) and the online
projections (detached; only the diagnostics read them).  Each view goes through the networks
in its own pass (BatchNorm statistics per view, as in the paper's code).

The global batch.  The loss is a mean over samples with nothing shared between them, so the
mean over processes (DDP) of each process's loss is the loss of one process on the global
batch; no gather is needed.  BatchNorm in the projector and predictor normalises per process
unless ``trainer.sync_batchnorm`` is on (the paper's TPU code normalises over the global batch;
the ImageNet recipe sets it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastive import diagnostics, hookimpl
from contrastive.errors import InvalidArgumentsError
from contrastive.methods.base import Batch, Method, Outputs, head_out_dim
from contrastive.methods.memory import MomentumEncoder, momentum_schedule

if TYPE_CHECKING:
    from contrastive.registry import Registries


def normalized_mse(p: Tensor, t: Tensor) -> Tensor:
    """``mean_i ‖p_i/‖p_i‖ − t_i/‖t_i‖‖²`` (= ``2 − 2·cos``) of ``(n, D)`` rows, in float32 or wider."""
    dtype = torch.promote_types(p.dtype, torch.float32)
    with torch.autocast(device_type=p.device.type, enabled=False):
        cos = F.cosine_similarity(p.to(dtype), t.to(dtype), dim=1)
        return (2.0 - 2.0 * cos).mean()


def check_momenta(name: str, momentum: float, final_momentum: float) -> None:
    """``0 <= momentum <= final_momentum <= 1``, numbers, or [`InvalidArgumentsError`][contrastive.errors.InvalidArgumentsError]."""
    for arg, value in (("momentum", momentum), ("final_momentum", final_momentum)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidArgumentsError(f"{name}: {arg} must be a number, got {value!r}")
    if not 0.0 <= float(momentum) <= float(final_momentum) <= 1.0:
        raise InvalidArgumentsError(
            f"{name}: momentum and final_momentum must satisfy 0 <= momentum <= final_momentum <= 1, "
            f"got momentum {momentum}, final_momentum {final_momentum}"
        )


def check_predictor(name: str, head: nn.Module, predictor: nn.Module) -> None:
    """The predictor must map the head's ``out_dim`` back to it (predictions meet projections)."""
    dim = head_out_dim(head, name, "the predictor's input and output")
    out = getattr(predictor, "out_dim", dim)
    if out != dim:
        raise InvalidArgumentsError(
            f"{name}: the predictor's out_dim {out} must equal the head's out_dim {dim} "
            f"(set --predictor.args.out_dim {dim})"
        )


class BYOL(Method):
    """BYOL: online ``q(g(f(x)))`` regresses a momentum target ``g_ξ(f_ξ(x))`` of the other view.

    Args:
        backbone, head, predictor: f, the projector g and the predictor q (injected; the
            predictor maps the head's ``out_dim`` to itself).  The target is a copy of f and g.
        momentum: the target's EMA coefficient τ at step 0 (0.996 in the paper).
        final_momentum: τ at the last step, reached on a cosine schedule (1.0 in the paper).

    ``forward`` -> ``{"p", "t", "z"}``, each ``(B, 2, D)``; ``loss`` -> ``L(p_1, t_2) + L(p_2, t_1)``;
    ``after_step`` moves the target network.
    """

    views = 2
    family = "negative-free (momentum target)"
    _name = "byol"

    def __init__(self, backbone: nn.Module, head: nn.Module, predictor: nn.Module,
                 momentum: float = 0.996, final_momentum: float = 1.0) -> None:
        super().__init__()
        check_momenta(self._name, momentum, final_momentum)
        check_predictor(self._name, head, predictor)
        self.backbone = backbone  # checkpoints hold backbone.*, head.*, predictor.*, target.*
        self.head = head
        self.predictor = predictor
        self.target = MomentumEncoder(nn.Sequential(backbone, head))
        self.momentum = float(momentum)
        self.final_momentum = float(final_momentum)

    def online_encoder(self) -> nn.Module:
        """``g∘f`` as one module, parameter names matching the target's."""
        return nn.Sequential(self.backbone, self.head)

    def momentum_at(self, step: int, total_steps: int) -> float:
        """τ after applied step ``step`` (1-based) of ``total_steps``."""
        return momentum_schedule(step, total_steps, self.momentum, self.final_momentum, schedule="cosine")

    def forward(self, views: list[Tensor], batch: Batch) -> Outputs:
        z = [self.head(self.backbone(view)) for view in views[:2]]
        p = torch.stack([self.predictor(zv) for zv in z], dim=1)
        with torch.no_grad():
            t = torch.stack([self.target(view) for view in views[:2]], dim=1)
        return {"p": p, "t": t, "z": torch.stack(z, dim=1).detach()}

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor | tuple[Tensor, dict[str, float]]:
        p, t = outputs["p"], outputs["t"].detach()
        loss = normalized_mse(p[:, 0], t[:, 1]) + normalized_mse(p[:, 1], t[:, 0])
        if not diagnostics.requested():
            return loss
        return loss, diagnostics.embedding_tally(outputs["z"]).result()

    def after_step(self, outputs: Outputs, batch: Batch, step: int, total_steps: int) -> None:
        self.target.update(self.online_encoder(), self.momentum_at(step, total_steps))

    def trainable_parameters(self) -> Iterable[tuple[str, nn.Parameter]]:
        return [(name, p) for name, p in self.named_parameters() if p.requires_grad and not name.startswith("target.")]


@hookimpl
def contrastive_register(registries: Registries):
    registries.methods.register("byol", BYOL)
