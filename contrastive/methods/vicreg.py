"""VICReg (Bardes, Ponce, LeCun 2022, "Variance-Invariance-Covariance Regularization",
arXiv:2105.04906) as a method.

One encoder — backbone f and expander g (the recipe's ``head:``, 8192-8192-8192 in the paper).
For the two views' embeddings ``Z, Z'`` ``(N, D)`` of the *global* batch::

    s(Z, Z') = mean_{b,d} (Z_bd − Z'_bd)²                                      invariance
    v(Z)     = mean_d max(0, 1 − sqrt(Var_b Z_d + ε))     (unbiased Var, ε = 1e-4)   variance
    c(Z)     = Σ_{i≠j} Cov(Z)_ij² / D,   Cov(Z) = (Z − Z̄)ᵀ(Z − Z̄) / (N − 1)      covariance
    loss = λ·s(Z, Z') + μ·(v(Z) + v(Z'))/2 + ν·(c(Z) + c(Z'))                     λ = μ = 25, ν = 1

as the official code computes it (``facebookresearch/vicreg``, ``main_vicreg.py``).

The global batch.  Every process gathers both views' embeddings from all processes **with**
gradient ([`contrastive.distributed.gather_with_grad`][contrastive.distributed.gather_with_grad], the official ``FullGatherLayer``)
and computes all three terms on the global batch, the same value on every process; the gather's
backward adds the W identical upstream gradients and DDP averages them, so the gradients are
those of one process on the concatenated batch.  A per-process variance and covariance is a
different objective that changes with the number of GPUs.

Shapes.  ``forward(views, batch)`` -> ``{"z": (B, 2, D)}``; computed in float32 (float64 kept)
with autocast off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastive import diagnostics, hookimpl
from contrastive.distributed import gather_with_grad
from contrastive.errors import RecipeError
from contrastive.methods.barlow_twins import check_number, off_diagonal
from contrastive.methods.base import Batch, Method, Outputs

if TYPE_CHECKING:
    from contrastive.registry import Registries

VARIANCE_EPS = 1e-4


def variance_term(z: Tensor, eps: float = VARIANCE_EPS) -> Tensor:
    """``mean_d relu(1 − sqrt(unbiased Var_b z_d + eps))`` of ``(N, D)``."""
    return F.relu(1.0 - torch.sqrt(z.var(dim=0) + eps)).mean()


def covariance_term(z: Tensor) -> Tensor:
    """``Σ_{i≠j} Cov(z)_ij² / D`` of ``(N, D)`` (unbiased covariance)."""
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (z.shape[0] - 1)
    return off_diagonal(cov).pow(2).sum() / z.shape[1]


def vicreg_loss(z_a: Tensor, z_b: Tensor, invariance: float = 25.0, variance: float = 25.0,
                covariance: float = 1.0) -> Tensor:
    """The VICReg loss of the GLOBAL batch from this process's ``(n, D)`` embeddings of the two
    views (row i of each: two views of sample i); the same value on every process."""
    dtype = torch.promote_types(z_a.dtype, torch.float32)
    with torch.autocast(device_type=z_a.device.type, enabled=False):
        a, b = gather_with_grad(z_a.to(dtype)), gather_with_grad(z_b.to(dtype))
        return (invariance * F.mse_loss(a, b)
                + variance * 0.5 * (variance_term(a) + variance_term(b))
                + covariance * (covariance_term(a) + covariance_term(b)))


class VICReg(Method):
    """VICReg: invariance between the views, variance and covariance of each over the global batch.

    Args:
        backbone, head: f and the expander g (injected; 8192-d in the paper).
        invariance, variance, covariance: the weights λ, μ, ν of the three terms (25, 25, 1).

    ``forward`` -> ``{"z": (B, 2, D)}``; ``loss`` -> the global batch's VICReg loss.
    """

    views = 2
    family = "negative-free (variance-covariance)"
    _name = "vicreg"

    def __init__(self, backbone: nn.Module, head: nn.Module, invariance: float = 25.0, variance: float = 25.0,
                 covariance: float = 1.0) -> None:
        super().__init__()
        self.invariance = check_number(self._name, "invariance", invariance)
        self.variance = check_number(self._name, "variance", variance)
        self.covariance = check_number(self._name, "covariance", covariance)
        self.backbone = backbone
        self.head = head

    def check_data(self, num_samples: int, global_batch: int) -> None:
        if global_batch < 2:
            raise RecipeError(f"{self._name} needs a global batch of at least 2 (the variance), got {global_batch}")

    def forward(self, views: list[Tensor], batch: Batch) -> Outputs:
        return {"z": torch.stack([self.head(self.backbone(view)) for view in views[:2]], dim=1)}

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor | tuple[Tensor, dict[str, float]]:
        z = outputs["z"]
        loss = vicreg_loss(z[:, 0], z[:, 1], self.invariance, self.variance, self.covariance)
        if not diagnostics.requested():
            return loss
        return loss, diagnostics.embedding_tally(z).result()


@hookimpl
def contrastive_register(registries: Registries):
    registries.methods.register("vicreg", VICReg)
