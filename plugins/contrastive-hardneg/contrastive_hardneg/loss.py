"""Hard negative sampling loss (Robinson, Chuang, Sra, Jegelka, ICLR 2021, arXiv:2010.04592).

For an anchor x with positive x⁺ and M negatives x_k (cosine similarities s⁺ and s_k,
temperature t), the loss is

    −log  pos / (pos + Ng),       pos = exp(s⁺/t),

    Ng = max( (−τ⁺·M·pos + Σ_k w_k·exp(s_k/t)) / (1 − τ⁺),  M·e^{−1/t} ),

    w_k = exp(β·s_k/t) / mean_j exp(β·s_j/t)          (importance weights, mean 1).

β ("concentration") up-weights negatives that are close to the anchor (hard negatives); τ⁺
(the class prior) removes the expected share of same-class "negatives" (debiasing, Chuang et
al., 2020).  β = 0 and τ⁺ = 0 give back SimCLR's NT-Xent loss.  Everything is computed in log
space, so small temperatures and large β cannot overflow.
"""

from __future__ import annotations

import math

import torch
from contrastive.components.losses import positive_pair_logits
from contrastive.errors import InvalidArgumentsError
from torch import nn


class HardNegativeLoss(nn.Module):
    """Hard negative sampling contrastive loss (Robinson et al., ICLR 2021, arXiv:2010.04592).

    Same interface as ``ntxent``: ``forward(z_a, z_b)`` with ``z_a``, ``z_b`` of shape
    ``(B, D)``, row i of each being two views of sample i, returns a scalar.  Every one of the
    2B views is an anchor; its positive is the other view of its sample and its M = 2B − 2
    negatives are the other views of the batch — of the global batch when torch.distributed
    runs several processes (gathered with gradient by
    :func:`contrastive.components.losses.positive_pair_logits`).  Computed in float32 even under
    autocast.

    Args:
        temperature: t > 0, as in NT-Xent.
        beta: concentration β ≥ 0 of the importance weights on negatives; 0 weights all alike.
        tau_plus: class prior τ⁺ in [0, 1) used for debiasing; 0 disables debiasing.
    """

    def __init__(self, temperature: float = 0.5, beta: float = 1.0, tau_plus: float = 0.1) -> None:
        super().__init__()
        if not temperature > 0:
            raise InvalidArgumentsError(f"hard_negative: temperature must be > 0, got {temperature}")
        if not beta >= 0:
            raise InvalidArgumentsError(f"hard_negative: beta must be >= 0, got {beta}")
        if not 0 <= tau_plus < 1:
            raise InvalidArgumentsError(f"hard_negative: tau_plus must be in [0, 1), got {tau_plus}")
        self.temperature = float(temperature)
        self.beta = float(beta)
        self.tau_plus = float(tau_plus)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor, *, beta: float | None = None) -> torch.Tensor:
        """``(B, D)``, ``(B, D)`` -> scalar; ``beta`` (≥ 0) overrides the constructor's concentration
        for this call (a schedule's current value, as ``hardneg_simclr`` anneals it)."""
        beta = self.beta if beta is None else float(beta)
        if not beta >= 0:
            raise ValueError(f"hard_negative: beta must be >= 0, got {beta}")
        if z_a.shape != z_b.shape or z_a.ndim != 2:
            raise ValueError(
                f"hard_negative expects two (B, D) tensors of one shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
            )
        with torch.autocast(device_type=z_a.device.type, enabled=False):
            # logits (2n, 2N): s/t of each local anchor against every global view, self = −inf.
            logits, targets = positive_pair_logits(z_a, z_b, self.temperature)
            num_negatives = logits.shape[1] - 2
            if num_negatives < 1:
                raise ValueError("hard_negative needs at least 2 samples in the (global) batch to have negatives")
            log_pos = logits.gather(1, targets[:, None]).squeeze(1)  # s⁺/t
            is_negative = torch.isfinite(logits)
            is_negative.scatter_(1, targets[:, None], False)
            negatives = logits.masked_fill(~is_negative, float("-inf"))  # s_k/t, −inf elsewhere
            log_m = math.log(num_negatives)

            # log Σ_k w_k·exp(s_k/t) = log M + logsumexp((1+β)·s_k/t) − logsumexp(β·s_k/t)
            if beta == 0:
                log_weighted = torch.logsumexp(negatives, dim=1)
            else:
                log_weighted = (
                    log_m
                    + torch.logsumexp((1 + beta) * negatives, dim=1)
                    - torch.logsumexp(beta * negatives, dim=1)
                )
            if self.tau_plus > 0:
                # log(A − B) with A = Σ w·neg and B = τ⁺·M·pos; −inf where B ≥ A (then the floor wins).
                log_subtracted = math.log(self.tau_plus) + log_m + log_pos
                gap = log_subtracted - log_weighted
                valid = gap < 0
                safe_gap = torch.where(valid, gap, torch.full_like(gap, -1.0))  # keep NaN out of the gradient
                log_debiased = log_weighted + torch.log(-torch.expm1(safe_gap)) - math.log(1 - self.tau_plus)
                log_weighted = torch.where(valid, log_debiased, torch.full_like(gap, float("-inf")))
            log_ng = torch.clamp(log_weighted, min=log_m - 1 / self.temperature)  # Ng ≥ M·e^{−1/t}

            # −log(pos / (pos + Ng)), averaged over this process's anchors
            return (torch.logaddexp(log_pos, log_ng) - log_pos).mean()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, beta={self.beta}, tau_plus={self.tau_plus}"
