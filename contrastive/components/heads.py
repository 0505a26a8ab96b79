"""Projection heads: ``(B, in_dim) -> (B, out_dim)``.

The engine injects ``in_dim`` (the backbone's ``num_features``); recipes give the rest.  SimCLR
(Chen et al., 2020, arXiv:2002.05709) trains the loss on ``z = g(h)`` and throws ``g`` away
afterwards; v1 uses a 2-layer MLP, v2 (arXiv:2006.10029) a 3-layer one.  DINO (Caron et al.
2021, arXiv:2104.14294) ends its MLP in an L2-normalised bottleneck and a weight-normalised layer
of ``out_dim`` prototypes ([`DINOHead`][contrastive.components.heads.DINOHead]).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastive import hookimpl
from contrastive.errors import InvalidArgumentsError

if TYPE_CHECKING:
    from contrastive.registry import Registries

__all__ = ["DINOHead", "IdentityHead", "LinearHead", "MLPHead"]


def _check_positive(component: str, **values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidArgumentsError(f"head '{component}': argument '{key}' should be a positive int, got {value!r}")


class MLPHead(nn.Module):
    """SimCLR projection MLP: ``(B, in_dim) -> (B, out_dim)``.

    ``num_layers`` Linear layers in all, each but the last followed by (BatchNorm1d and) ReLU:

    * ``num_layers=1``: ``Linear(in_dim, out_dim)``;
    * ``num_layers=2`` (SimCLR v1): ``Linear -> BN -> ReLU -> Linear``;
    * ``num_layers=3`` (SimCLR v2): two ``Linear -> BN -> ReLU`` blocks, then ``Linear``.

    Linear layers followed by a BatchNorm have no bias.

    Args:
        in_dim: input features; injected by the engine from the backbone's ``num_features``.
        hidden_dim: width of the hidden layers.
        out_dim: dimension of the projection ``z`` given to the loss.
        num_layers: number of Linear layers (>= 1).
        batch_norm: BatchNorm1d after each hidden Linear layer.
        last_batch_norm: BatchNorm1d after the last Linear layer as well (SimCLR v2's official code).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 2048,
        out_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = True,
        last_batch_norm: bool = False,
    ) -> None:
        super().__init__()
        _check_positive("mlp", in_dim=in_dim, hidden_dim=hidden_dim, out_dim=out_dim, num_layers=num_layers)
        self.in_dim = in_dim
        self.out_dim = out_dim
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=not last_batch_norm))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class LinearHead(nn.Module):
    """One linear projection: ``(B, in_dim) -> (B, out_dim)``; ``in_dim`` is injected by the engine."""

    def __init__(self, in_dim: int, out_dim: int = 128) -> None:
        super().__init__()
        _check_positive("linear", in_dim=in_dim, out_dim=out_dim)
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


class IdentityHead(nn.Module):
    """No projection: ``(B, in_dim) -> (B, in_dim)``, ``out_dim == in_dim``; ``in_dim`` is injected."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        _check_positive("identity", in_dim=in_dim)
        self.in_dim = in_dim
        self.out_dim = in_dim

    def forward(self, x: Tensor) -> Tensor:
        return x


class DINOHead(nn.Module):
    """DINO's projection head: ``(B, in_dim) -> (B, out_dim)`` logits over ``out_dim`` prototypes.

    ``num_layers`` Linear layers (GELU between them, BatchNorm1d before each GELU with
    ``batch_norm``) map ``in_dim`` to ``bottleneck_dim``; the result is L2-normalised and fed to
    ``last_layer``, a bias-free Linear ``bottleneck_dim -> out_dim`` under weight normalisation
    (``torch.nn.utils.parametrizations.weight_norm``: ``W = g · V / ‖V‖`` row by row, ``g``
    starting at 1).  With ``norm_last_layer`` ``g`` stays 1 (it does not require grad), so every
    output is a cosine between the bottleneck and a prototype; without it ``g`` trains too
    (better for ViT-S in the paper's code, less stable).  The MLP's Linear weights start from a
    normal of std 0.02 truncated to ±2 (biases 0), as the official ``DINOHead``
    (facebookresearch/dino, ``vision_transformer.py``).

    The method freezes ``last_layer`` for its first epoch (`contrastive.methods.dino`).  Written
    here rather than taken from lightly's ``DINOProjectionHead`` (which computes the same:
    tests/methods/test_dino.py): lightly's uses the deprecated ``torch.nn.utils.weight_norm``,
    whose module cannot be deep-copied (DINO's teacher is a deep copy), and lightly is not a
    dependency of the package.

    Args:
        in_dim: input features; injected by the engine from the backbone's ``num_features``.
        out_dim: K, the number of prototypes (65536 in the paper).
        hidden_dim: width of the hidden layers (2048).
        bottleneck_dim: width of the normalised bottleneck (256).
        num_layers: Linear layers of the MLP before the bottleneck's normalisation (3; 1: one
            Linear ``in_dim -> bottleneck_dim``).
        batch_norm: BatchNorm1d after each hidden Linear (the paper's ``use_bn_in_head``, off).
        norm_last_layer: keep the last layer's weight norm ``g`` at 1.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        batch_norm: bool = False,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        _check_positive("dino", in_dim=in_dim, out_dim=out_dim, hidden_dim=hidden_dim, bottleneck_dim=bottleneck_dim,
                        num_layers=num_layers)
        self.in_dim = in_dim
        self.out_dim = out_dim
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02, a=-2.0, b=2.0)
                nn.init.zeros_(layer.bias)
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0  # g, (out_dim, 1)
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(not norm_last_layer)

    def forward(self, x: Tensor) -> Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


@hookimpl
def contrastive_register(registries: Registries):
    registries.heads.register("mlp", MLPHead)
    registries.heads.register("linear", LinearHead)
    registries.heads.register("identity", IdentityHead)
    registries.heads.register("dino", DINOHead)
