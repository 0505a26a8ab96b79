"""Decoupled contrastive losses (Yeh et al., 2022, "Decoupled Contrastive Learning", arXiv:2110.06848).

``dcl``: NT-Xent with the positive removed from the denominator.  For a
batch of N samples with two views each, every one of the 2N views is an anchor i with positive
i⁺ (the other view of its sample); with s the cosine similarity and τ the temperature,

    l_i = −s(z_i, z_i⁺)/τ + log Σ_{k ∉ {i, i⁺}} exp(s(z_i, z_k)/τ),

averaged over all 2N anchors (the paper's symmetric form, both views as anchors).  Without the
positive in the denominator the negative-positive coupling of NT-Xent's gradient is gone, which
is what lets DCL train well with small batches.

``dclw``: DCL with the positive term weighted by the negative von Mises-Fisher weighting of the
paper (DCLW):

    l_i = −w_i · s(z_i, z_i⁺)/τ + log Σ_{k ∉ {i, i⁺}} exp(s(z_i, z_k)/τ),
    w_i = 2 − 2N · exp(s(z_i, z_i⁺)/σ) / Σ_j exp(s(z_j, z_j⁺)/σ),

the sum over the 2N anchors j of the global batch (σ = 0.5 by default), so the weights average
to 1 and easy positives (high similarity) weigh less.  Since s(z_j, z_j⁺) is the same for both
views of a sample, this is the reference implementation's one-direction form
``2 − N · softmax_N(s/σ)`` (github.com/raminnakhli/Decoupled-Contrastive-Learning,
``loss/dcl.py``).  The weights are treated as constants (detached), as Lightly's
``DCLWLoss`` does; the reference implementation above leaves them attached.

Across processes both losses are exact: the negatives come from every process (gathered *with*
gradient, [`contrastive.distributed.gather_with_grad`][contrastive.distributed.gather_with_grad]), each rank computes only its own 2n
anchors against the 2N global views and returns their mean, so the loss (and the gradients of
``loss / world``, as DDP averages them) averaged over ranks is the one-process loss on the
global batch.  DCLW's normaliser Σ_j runs over the global batch: the positive similarities are
gathered without gradient (the weights are detached anyway).

Computed in float32 under bf16/fp16 autocast (float64 stays float64), stable through
log-sum-exp with each anchor's own column and its positive's column set to −inf.  Unlike
``ntxent``, these losses are not tiled: a rank holds its whole ``(2n, 2N)`` similarity matrix,
O(n·N) memory, which matters only for very large batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from contrastive import hookimpl
from contrastive.bounds import check_arguments
from contrastive.components.losses import _normalized_rows_and_columns, _self_and_positive_columns
from contrastive.distributed import all_gather_no_grad

if TYPE_CHECKING:
    from contrastive.registry import Registries


def decoupled_contrastive_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, temperature: float, sigma: float | None = None, *, name: str = "dcl"
) -> torch.Tensor:
    """DCL (``sigma=None``) or DCLW (``sigma`` > 0) of this rank's 2n anchors, their mean.

    Args:
        z_a, z_b: ``(n, D)`` embeddings of the two views of this rank's n samples.
        temperature: τ > 0.
        sigma: σ of the von Mises-Fisher weights, or None for unweighted DCL.
        name: the loss's name in error messages.
    Returns:
        A scalar in float32 (float64 for float64 inputs); autocast is turned off inside.
    """
    if z_a.shape != z_b.shape or z_a.ndim != 2:
        raise ValueError(f"{name} expects two (B, D) tensors of one shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    with torch.autocast(device_type=z_a.device.type, enabled=False):
        local, columns = _normalized_rows_and_columns(z_a, z_b)
        n = z_a.shape[0]
        global_n = columns.shape[0] // 2
        if global_n < 2:  # the same on every rank: no negatives at all
            raise ValueError(f"{name} needs at least 2 samples in the global batch (the negatives), got {global_n}")
        self_columns, positive_columns = _self_and_positive_columns(n, global_n, z_a.device)
        logits = local @ columns.T / temperature
        rows = torch.arange(2 * n, device=z_a.device)
        logits[rows, self_columns] = float("-inf")
        logits[rows, positive_columns] = float("-inf")
        negatives = torch.logsumexp(logits, dim=1)  # (2n,)
        # The positive of anchor i is the other view of its own sample, held by this rank.
        positive_sims = (local[:n] * local[n:]).sum(dim=1)  # (n,), the same for both views
        positives = positive_sims / temperature
        if sigma is not None:
            scaled = positive_sims.detach() / sigma
            # Σ over the 2N global anchors = 2 × Σ over the N global samples: w = 2 − N·softmax_N.
            log_normaliser = torch.logsumexp(all_gather_no_grad(scaled), dim=0)
            weights = 2 - global_n * torch.exp(scaled - log_normaliser)
            positives = positives * weights
        return (negatives - positives.repeat(2)).mean()


class DCLLoss(nn.Module):
    """Decoupled contrastive loss (Yeh et al. 2022): NT-Xent without the positive in the denominator.

    ``(z_a, z_b)``, each ``(B, D)``, row i = two views of sample i -> scalar, the mean over the
    2B anchors.  Computed in float32 under autocast; negatives from all processes when
    torch.distributed runs with several; O(B·N) memory (not tiled).

    Args:
        temperature: τ > 0 (0.1 in the paper).
    """

    name = "dcl"
    arg_bounds: ClassVar[dict[str, dict[str, float]]] = {"temperature": {"gt": 0}}

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        check_arguments(self.name, DCLLoss, temperature=temperature)
        self.temperature = float(temperature)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return decoupled_contrastive_loss(z_a, z_b, self.temperature, name=self.name)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class DCLWLoss(DCLLoss):
    """DCL with von Mises-Fisher weighting of the positives (Yeh et al. 2022, DCLW).

    ``w_i = 2 − 2N·exp(s_i⁺/σ) / Σ_j exp(s_j⁺/σ)`` over the global batch, detached; otherwise
    as ``dcl``.

    Args:
        temperature: τ > 0 (0.1 in the paper).
        sigma: σ > 0 of the weighting (0.5 in the paper).
    """

    name = "dclw"
    arg_bounds: ClassVar[dict[str, dict[str, float]]] = {**DCLLoss.arg_bounds, "sigma": {"gt": 0}}

    def __init__(self, temperature: float = 0.1, sigma: float = 0.5) -> None:
        super().__init__(temperature)
        check_arguments(self.name, DCLWLoss, sigma=sigma)
        self.sigma = float(sigma)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return decoupled_contrastive_loss(z_a, z_b, self.temperature, self.sigma, name=self.name)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, sigma={self.sigma}"


@hookimpl
def contrastive_register(registries: Registries):
    registries.losses.register("dcl", DCLLoss)
    registries.losses.register("dclw", DCLWLoss)
