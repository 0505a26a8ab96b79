"""Barlow Twins (Zbontar, Jing, Misra, LeCun, Deny 2021, arXiv:2103.03230) as a method.

One encoder — backbone f and projector g (the recipe's ``head:``, 8192-8192-8192 in the paper).
The cross-correlation matrix of the two views' projections, each normalised per dimension over
the batch, is pushed towards the identity::

    ẑ^A = (z^A − mean_b z^A) / sqrt(var_b z^A + ε)      per dimension, over the GLOBAL batch (ε = 1e-5)
    C_ij = Σ_b ẑ^A_bi ẑ^B_bj / N                          N = the global batch
    loss = Σ_i (1 − C_ii)² + λ Σ_i Σ_{j≠i} C_ij²          λ = 5e-3 (the official code: 0.0051)

as the official code computes it (``BatchNorm1d(affine=False)`` — biased variance, ε = 1e-5 —
on each view, ``c = bn(z1).T @ bn(z2) / batch_size`` summed over GPUs).

The global batch.  The statistics (mean, variance) and the matrix are those of the *global*
batch: every process gathers both views' projections from all processes **with** gradient
([`contrastive.distributed.gather_with_grad`][contrastive.distributed.gather_with_grad]) and computes the same global loss.  The
gather's backward adds the W identical upstream gradients and DDP averages over the W
processes, so the parameter gradients are exactly those of one process on the concatenated
batch (``tests/methods/test_negative_free_distributed.py``).  A per-process version — each GPU
normalising and correlating its own shard — trains a different objective whose value depends on
the number of GPUs.

Per-group learning rates.  The paper trains biases and BatchNorm parameters with a lr 0.0048/0.2
= 0.024 times the weights' (both × batch/256 under LARS); `BarlowTwins.param_group_options`
puts every parameter with ``ndim <= 1`` in a group at ``bias_lr_scale`` × the optimizer's lr.

Shapes.  ``forward(views, batch)`` -> ``{"z": (B, 2, D)}``; the matrix is ``(D, D)``, computed in
float32 (float64 kept) with autocast off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from contrastive import diagnostics, hookimpl
from contrastive.distributed import gather_with_grad
from contrastive.errors import InvalidArgumentsError
from contrastive.methods.base import Batch, Method, Outputs

if TYPE_CHECKING:
    from contrastive.registry import Registries

BATCH_NORM_EPS = 1e-5


def off_diagonal(m: Tensor) -> Tensor:
    """The off-diagonal entries of a square ``(D, D)`` matrix, flattened: ``(D·(D − 1),)``."""
    d = m.shape[0]
    return m.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()


def standardize(z: Tensor, eps: float = BATCH_NORM_EPS) -> Tensor:
    """``(N, D)`` -> ``(N, D)``: each column minus its mean over the rows, over ``sqrt(biased var + eps)``."""
    centred = z - z.mean(dim=0)
    return centred / torch.sqrt(centred.pow(2).mean(dim=0) + eps)


def barlow_twins_loss(z_a: Tensor, z_b: Tensor, lambda_offdiag: float = 5e-3) -> Tensor:
    """The Barlow Twins loss of the GLOBAL batch from this process's ``(n, D)`` projections of
    the two views (row i of each: two views of sample i); the same value on every process."""
    dtype = torch.promote_types(z_a.dtype, torch.float32)
    with torch.autocast(device_type=z_a.device.type, enabled=False):
        a = standardize(gather_with_grad(z_a.to(dtype)))
        b = standardize(gather_with_grad(z_b.to(dtype)))
        c = a.T @ b / a.shape[0]
        on = (torch.diagonal(c) - 1.0).pow(2).sum()
        return on + lambda_offdiag * off_diagonal(c).pow(2).sum()


def check_number(name: str, arg: str, value: object, *, positive: bool = False) -> float:
    """``value`` as a float, or [`InvalidArgumentsError`][contrastive.errors.InvalidArgumentsError] (not a number, negative, or 0 with ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentsError(f"{name}: {arg} must be a number, got {value!r}")
    if not (value > 0 if positive else value >= 0):
        raise InvalidArgumentsError(f"{name}: {arg} must be {'> 0' if positive else '>= 0'}, got {value}")
    return float(value)


class BarlowTwins(Method):
    """Barlow Twins: the two views' cross-correlation over the global batch pushed to the identity.

    Args:
        backbone, head: f and the projector g (injected; 8192-d in the paper).
        lambda_offdiag: λ, the weight of the off-diagonal (redundancy) term (5e-3).
        bias_lr_scale: lr of biases and normalisation parameters (``ndim <= 1``) relative to the
            weights' (0.0048 / 0.2 = 0.024 in the paper; 1 for one lr).

    ``forward`` -> ``{"z": (B, 2, D)}``; ``loss`` -> the global batch's Barlow Twins loss.
    """

    views = 2
    family = "negative-free (redundancy reduction)"
    _name = "barlow_twins"

    def __init__(self, backbone: nn.Module, head: nn.Module, lambda_offdiag: float = 5e-3,
                 bias_lr_scale: float = 0.024) -> None:
        super().__init__()
        self.lambda_offdiag = check_number(self._name, "lambda_offdiag", lambda_offdiag)
        self.bias_lr_scale = check_number(self._name, "bias_lr_scale", bias_lr_scale, positive=True)
        self.backbone = backbone
        self.head = head

    def forward(self, views: list[Tensor], batch: Batch) -> Outputs:
        return {"z": torch.stack([self.head(self.backbone(view)) for view in views[:2]], dim=1)}

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor | tuple[Tensor, dict[str, float]]:
        z = outputs["z"]
        loss = barlow_twins_loss(z[:, 0], z[:, 1], self.lambda_offdiag)
        if not diagnostics.requested():
            return loss
        return loss, diagnostics.embedding_tally(z).result()

    def param_group_options(self, name: str, parameter: nn.Parameter) -> dict:
        return {"lr_scale": self.bias_lr_scale} if parameter.ndim <= 1 and self.bias_lr_scale != 1.0 else {}


@hookimpl
def contrastive_register(registries: Registries):
    registries.methods.register("barlow_twins", BarlowTwins)
