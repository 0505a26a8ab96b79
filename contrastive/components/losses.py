"""Contrastive losses.

``ntxent``: the normalised temperature-scaled cross entropy of SimCLR (Chen et al., 2020,
arXiv:2002.05709, eq. 1).  For a batch of N samples with two views each, every one of the 2N
views is an anchor; its positive is the other view of the same sample and its negatives are
the remaining 2N − 2 views:

    l(i, j) = −log  exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ),   sim = cosine,

averaged over all 2N anchors.  When torch.distributed runs with several processes, the
negatives come from every process (gathered *with* gradient, see
:mod:`contrastive.distributed`); each rank computes only its own 2n rows against the 2N global
columns, so the loss averaged over ranks equals the single-process loss on the global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from contrastive import hookimpl
from contrastive.distributed import gather_with_grad, rank
from contrastive.errors import InvalidArgumentsError


def positive_pair_logits(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarity logits of this rank's anchors against every view of the global batch.

    Args:
        z_a, z_b: ``(n, D)`` embeddings of the two views of this rank's n samples.
    Returns:
        ``logits`` ``(2n, 2N)`` float32 with each anchor's self-similarity set to −inf, and
        ``targets`` ``(2n,)`` holding the column of each anchor's positive.
    """
    n = z_a.shape[0]
    local = F.normalize(torch.cat([z_a, z_b]).float(), dim=1)
    columns_a = gather_with_grad(F.normalize(z_a.float(), dim=1))
    columns_b = gather_with_grad(F.normalize(z_b.float(), dim=1))
    columns = torch.cat([columns_a, columns_b])  # (2N, D): all first views, then all second views
    global_n = columns_a.shape[0]
    logits = local @ columns.T / temperature

    offset = rank() * n
    idx = torch.arange(n, device=z_a.device) + offset
    self_columns = torch.cat([idx, idx + global_n])
    targets = torch.cat([idx + global_n, idx])
    rows = torch.arange(2 * n, device=z_a.device)
    logits[rows, self_columns] = float("-inf")
    return logits, targets


class NTXentLoss(nn.Module):
    """SimCLR's NT-Xent loss: ``(z_a, z_b)``, each ``(B, D)``, row i = two views of sample i -> scalar.

    Computed in float32 even under bf16/fp16 autocast; self-similarities are masked; stable
    through log-sum-exp (``F.cross_entropy``).  Negatives come from all processes when
    torch.distributed is initialised with world size > 1.

    Args:
        temperature: τ > 0; 0.1 for large batches (ImageNet, 4096), 0.5 for small ones.
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        if not temperature > 0:
            raise InvalidArgumentsError(f"ntxent: temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        if z_a.shape != z_b.shape or z_a.ndim != 2:
            raise ValueError(f"ntxent expects two (B, D) tensors of one shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
        with torch.autocast(device_type=z_a.device.type, enabled=False):
            logits, targets = positive_pair_logits(z_a, z_b, self.temperature)
            return F.cross_entropy(logits, targets)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


@hookimpl
def contrastive_register(registries):
    registries.losses.register("ntxent", NTXentLoss)
