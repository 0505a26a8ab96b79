"""``hardneg_simclr``: SimCLR trained with the hard negative sampling loss and a hardness warm-up.

Robinson, Chuang, Sra & Jegelka, *Contrastive Learning with Hard Negative Samples*, ICLR 2021
(arXiv:2010.04592).  The encoder is SimCLR's (Chen et al., 2020, arXiv:2002.05709): backbone f
and projection head g, ``z = g(f(x))`` for each of two views.  The loss is
:class:`~contrastive_hardneg.loss.HardNegativeLoss`, whose concentration β up-weights the
negatives closest to each anchor.  Early in training every negative is about as close as any
other, so hard negatives carry little signal and a large β only adds variance; this method
therefore starts at β = 0 (uniform weights: debiased NT-Xent) and raises β linearly to its
target over the first ``warmup_fraction`` of the run, then holds it.

The schedule lives in buffers (``steps_seen``, ``schedule_step``, ``schedule_total``), written
only by :meth:`HardNegSimCLR.after_step`, so a checkpoint carries it and a resumed run uses
exactly the β the uninterrupted run would have used.
"""

from __future__ import annotations

import torch
from contrastive import Batch, Method, diagnostics
from contrastive.errors import InvalidArgumentsError
from contrastive.methods.base import Outputs, embed_views
from torch import Tensor, nn

from contrastive_hardneg.loss import HardNegativeLoss


class HardNegSimCLR(Method):
    """SimCLR with the hard negative sampling loss (Robinson et al., ICLR 2021), β warmed up from 0.

    ``forward(views, batch)``: two views, each ``(B, C, H, W)`` float -> ``{"z": (B, 2, D)}``
    (``z[:, v]`` = ``head(backbone(views[v]))``).  ``loss``: ``HardNegativeLoss(z[:, 0],
    z[:, 1])`` at the current β, with the diagnostic ``beta`` every step and, on the steps the
    loop records, contrastive's shared ones (``contrastive.diagnostics``: ``positive_cosine``,
    ``contrastive_accuracy``, ``uniformity``, ...).

    Args:
        backbone: the encoder f, ``(N, C, H, W)`` -> ``(N, num_features)`` (injected).
        head: the projection head g, ``(N, num_features)`` -> ``(N, D)`` (injected).
        temperature: t > 0 of the loss.
        beta: target concentration β ≥ 0 on hard negatives (the paper: 0.5 to 1.0 on CIFAR-10).
        tau_plus: class prior τ⁺ in [0, 1) for debiasing; 0 disables it.
        warmup_fraction: share of the run's steps, in [0, 1], over which β rises linearly from
            0 to ``beta``; 0 uses the target from the first step.
    """

    views = 2

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        temperature: float = 0.5,
        beta: float = 1.0,
        tau_plus: float = 0.1,
        warmup_fraction: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0 <= warmup_fraction <= 1:
            raise InvalidArgumentsError(f"hardneg_simclr: warmup_fraction must be in [0, 1], got {warmup_fraction}")
        self.backbone = backbone  # attribute names: checkpoints hold backbone.* and head.*
        self.head = head
        self.criterion = HardNegativeLoss(temperature=temperature, beta=beta, tau_plus=tau_plus)  # validates
        self.target_beta = float(beta)
        self.warmup_fraction = float(warmup_fraction)
        # The schedule's state, in the state dict (checkpoints) and moved with the module.
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.int64))  # applied optimiser steps
        self.register_buffer("schedule_step", torch.zeros((), dtype=torch.int64))  # last after_step's step
        self.register_buffer("schedule_total", torch.zeros((), dtype=torch.int64))  # its total_steps

    def encode(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, D)``: ``g(f(x))``."""
        return self.head(self.backbone(x))

    def forward(self, views: list[Tensor], batch: Batch) -> Outputs:
        """Two views ``(B, C, H, W)`` -> ``{"z": (B, 2, D)}``.  Pure: writes no state."""
        return {"z": embed_views(self.encode, views)}

    def current_beta(self) -> float:
        """β for the next loss: ``beta · min(1, step / (warmup_fraction · total_steps))`` from the
        buffers written by the last :meth:`after_step` (0 before the first one)."""
        if self.warmup_fraction == 0:
            return self.target_beta
        total = int(self.schedule_total)
        if total <= 0:
            return 0.0
        return self.target_beta * min(1.0, int(self.schedule_step) / (self.warmup_fraction * total))

    def loss(self, outputs: Outputs, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """``outputs["z"]`` ``(B, 2, D)`` over the whole step -> (scalar loss, diagnostics).  Reads state only."""
        z = outputs["z"]
        z_a, z_b = z[:, 0].contiguous(), z[:, 1].contiguous()
        beta = self.current_beta()
        loss = self.criterion(z_a, z_b, beta=beta)
        logs = {"beta": beta}
        if diagnostics.requested():  # a step the loop records: the shared contrastive diagnostics
            views = z.shape[1]
            tally = diagnostics.batch_tally(z.reshape(-1, z.shape[-1]), batch.index.repeat_interleave(views),
                                            getattr(self.criterion, "temperature", None))
            logs.update(tally.result())
        return loss, logs

    @torch.no_grad()
    def after_step(self, outputs: Outputs, batch: Batch, step: int, total_steps: int) -> None:
        """Once per applied optimiser step: count it and advance the β schedule to ``step / total_steps``."""
        self.steps_seen.add_(1)
        self.schedule_step.fill_(int(step))
        self.schedule_total.fill_(int(total_steps))

    def extra_repr(self) -> str:
        return f"beta={self.target_beta}, warmup_fraction={self.warmup_fraction}"
