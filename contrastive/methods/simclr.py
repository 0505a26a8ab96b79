"""SimCLR (Chen et al., 2020, arXiv:2002.05709) as a method: ``z = g(f(x))`` for every view.

Every other view of the same image is a positive, every view of another image a negative.
With two views the recipe's loss compares the pair, ``loss(z_a, z_b)`` — the ``losses``
contract, so any registered loss (``ntxent``, a plugin's) works; with more views (multi-crop,
``views:`` groups) the loss's multi-view form ``loss.multiview(z, ids)`` runs with ``ids`` = the
sample's dataset index, so every pair of views of one image is a positive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import Tensor, nn

from contrastive import diagnostics, hookimpl
from contrastive.errors import RecipeError
from contrastive.methods.base import Batch, Method, Outputs, embed_views

if TYPE_CHECKING:
    from contrastive.registry import Registries


class SimCLR(Method):
    """SimCLR: backbone f and projection head g per view, the recipe's loss over the views.

    ``forward`` -> ``{"z": (B, V, D)}``; ``loss``: ``loss(z[:, 0], z[:, 1])`` for V = 2, else
    ``loss.multiview(z, ids)`` (V ≥ 2 views of every image are positives of each other).
    """

    views = 2
    always_multiview = False  # the loss's multi-view form even for 2 views (SupCon's class positives)
    family = "contrastive (in-batch negatives)"
    _name = "simclr"  # in messages

    def __init__(self, backbone: nn.Module, head: nn.Module, loss: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone  # attribute names: checkpoints hold backbone.* and head.*
        self.head = head
        self.criterion = loss

    def encode(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, D)``: ``g(f(x))``."""
        return self.head(self.backbone(x))

    def check_views(self, counts: Sequence[int]) -> None:
        total = sum(counts)
        if total < 2:
            raise RecipeError(f"{self._name} needs at least 2 views per image, the recipe gives {total}")
        if total > 2 or self.always_multiview:
            self._require_multiview(total)

    def _require_multiview(self, total: int) -> None:
        if not callable(getattr(self.criterion, "multiview", None)):
            raise RecipeError(
                f"{self._name} with {total} views needs a loss with a multi-view form multiview(z, ids), such as "
                f"ntxent; {type(self.criterion).__name__} only compares pairs (use --loss.name ntxent or 2 views)"
            )

    def forward(self, views: list[Tensor], batch: Batch) -> Outputs:
        return {"z": embed_views(self.encode, views)}

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor | tuple[Tensor, dict[str, float]]:
        z = outputs["z"]
        rows, views = z.shape[0], z.shape[1]
        if views == 2:  # the pair contract, exactly as SimCLR always ran
            loss = self.criterion(z[:, 0].contiguous(), z[:, 1].contiguous())
        else:
            loss = self.criterion.multiview(z.reshape(rows * views, -1), batch.index.repeat_interleave(views))
        return self.with_diagnostics(loss, z, batch.index, batch.index)

    def with_diagnostics(self, loss: Tensor, z: Tensor, ids: Tensor, samples: Tensor) -> Tensor | tuple[Tensor, dict[str, float]]:
        """``loss``, or ``(loss, diagnostics)`` on the steps the loop records
        (`contrastive.diagnostics`).  ``z`` ``(B, V, D)``; rows of equal ``ids`` ``(B,)`` are
        positives, ``samples`` ``(B,)`` tells the images apart; τ is the loss's ``temperature``
        where it has one."""
        if not diagnostics.requested():
            return loss
        rows, views = z.shape[0], z.shape[1]
        tally = diagnostics.batch_tally(z.reshape(rows * views, -1), ids.repeat_interleave(views),
                                        getattr(self.criterion, "temperature", None),
                                        samples=samples.repeat_interleave(views))
        return loss, tally.result()


@hookimpl
def contrastive_register(registries: Registries):
    registries.methods.register("simclr", SimCLR)
