"""SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning",
arXiv:2011.10566) as a method.

One encoder — backbone f and projector g (the recipe's ``head:``) — and a predictor h with a
bottleneck (the recipe's ``predictor:``, 2048 -> 512 -> 2048 in the paper).  No momentum
encoder, no negatives; the stop-gradient on the other view's projection is what prevents
collapse::

    z_v = g(f(x_v)),   p_v = h(z_v)                           v = 1, 2
    D(p, z) = −cos(p, stopgrad(z))                            mean over the samples
    loss = D(p_1, z_2)/2 + D(p_2, z_1)/2                      (minimum −1)

The paper's predictor learning rate is *fixed* (not decayed by the schedule; its Table 1: with
a decayed predictor lr accuracy drops).  With ``fix_predictor_lr`` (default) the method says so
through `SimSiam.param_group_options`: the predictor's parameters get their own optimizer
group whose lr the scheduler leaves at its base value (docs/methods.md, "Per-group learning rates").

Shapes.  ``forward(views, batch)`` -> ``{"p": (B, 2, D), "z": (B, 2, D)}``: predictions (with
gradient) and projections, detached — the stop-gradient (the encoder's gradient comes only
through ``p``, whose graph runs through the projections).

The global batch.  The loss is a mean over samples, so the DDP mean over processes equals one
process on the global batch; BatchNorm statistics are per process unless
``trainer.sync_batchnorm`` is on (the paper uses SyncBN; the ImageNet recipe sets it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastive import diagnostics, hookimpl
from contrastive.methods.base import Batch, Method, Outputs
from contrastive.methods.byol import check_predictor

if TYPE_CHECKING:
    from contrastive.registry import Registries


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """``−mean_i cos(p_i, z_i)`` of ``(n, D)`` rows, in float32 or wider (``z`` is not detached here)."""
    dtype = torch.promote_types(p.dtype, torch.float32)
    with torch.autocast(device_type=p.device.type, enabled=False):
        return -F.cosine_similarity(p.to(dtype), z.to(dtype), dim=1).mean()


class SimSiam(Method):
    """SimSiam: the prediction ``h(g(f(x)))`` of each view matches the other view's projection
    ``g(f(x))`` under a stop-gradient.

    Args:
        backbone, head, predictor: f, the projector g and the predictor h (injected; the
            predictor maps the head's ``out_dim`` to itself).
        fix_predictor_lr: keep the predictor's lr at its base value while the scheduler moves
            the rest (the paper's setting).

    ``forward`` -> ``{"p", "z"}``, each ``(B, 2, D)``; ``loss`` -> ``D(p_1, z_2)/2 + D(p_2, z_1)/2``.
    """

    views = 2
    family = "negative-free (stop-gradient)"
    _name = "simsiam"

    def __init__(self, backbone: nn.Module, head: nn.Module, predictor: nn.Module, fix_predictor_lr: bool = True) -> None:
        super().__init__()
        check_predictor(self._name, head, predictor)
        self.backbone = backbone
        self.head = head
        self.predictor = predictor
        self.fix_predictor_lr = bool(fix_predictor_lr)

    def forward(self, views: list[Tensor], batch: Batch) -> Outputs:
        z = [self.head(self.backbone(view)) for view in views[:2]]
        p = [self.predictor(zv) for zv in z]
        return {"p": torch.stack(p, dim=1), "z": torch.stack(z, dim=1).detach()}  # z: the stop-gradient

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor | tuple[Tensor, dict[str, float]]:
        p, z = outputs["p"], outputs["z"].detach()  # the stop-gradient (forward already detached z)
        loss = 0.5 * negative_cosine(p[:, 0], z[:, 1]) + 0.5 * negative_cosine(p[:, 1], z[:, 0])
        if not diagnostics.requested():
            return loss
        return loss, diagnostics.embedding_tally(z).result()

    def param_group_options(self, name: str, parameter: nn.Parameter) -> dict:
        if self.fix_predictor_lr and name.startswith("predictor."):
            return {"fixed_lr": True}
        return {}


@hookimpl
def contrastive_register(registries: Registries):
    registries.methods.register("simsiam", SimSiam)
