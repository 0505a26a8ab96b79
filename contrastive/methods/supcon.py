"""SupCon (Khosla et al., 2020, arXiv:2004.11362): supervised contrastive learning.

Every view of every image of the same *class* is a positive (the paper's L_out), through the
loss's multi-view form ``loss.multiview(z, ids)`` with ``ids`` = the images' labels: with
``ntxent`` the negatives come from every process, gathered with exact gradients, and large
batches are tiled, as for SimCLR.  The paper's temperature is 0.1 (``--loss.args.temperature``).
Labels come from the data (``Batch.labels``); data without labels is refused before training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from contrastive import hookimpl
from contrastive.methods.base import Batch, Outputs
from contrastive.methods.simclr import SimCLR

if TYPE_CHECKING:
    from contrastive.registry import Registries


class SupCon(SimCLR):
    """SupCon: backbone and head per view as SimCLR; views of one class are positives (labels required).

    ``forward`` -> ``{"z": (B, V, D)}``; ``loss``: ``loss.multiview(z, labels repeated V times)``.
    """

    requires_labels = True
    always_multiview = True
    family = "supervised contrastive (class positives)"
    _name = "supcon"

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor | tuple[Tensor, dict[str, float]]:
        z = outputs["z"]
        rows, views = z.shape[0], z.shape[1]
        labels = batch.require_labels(self._name)
        loss = self.criterion.multiview(z.reshape(rows * views, -1), labels.repeat_interleave(views))
        return self.with_diagnostics(loss, z, labels, batch.index)  # positives: the views of one class


@hookimpl
def contrastive_register(registries: Registries):
    registries.methods.register("supcon", SupCon)
