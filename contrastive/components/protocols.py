"""Built-in evaluation protocols on frozen features, registered under ``protocols`` like a plugin's:
``knn`` and ``linear`` (`contrastive.evaluation.protocols` states the contract).
``label_free`` (alignment, uniformity, effective rank) needs augmented views rather than
features and labels, so it is run by the evaluation itself and is not an entry of this kind.
``linear_augmented`` and ``finetune`` train on images (``needs_images``; the contract is in
`contrastive.evaluation.image_protocols`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from contrastive import hookimpl
from contrastive.evaluation.image_protocols import finetune, linear_augmented
from contrastive.evaluation.protocols import knn, linear

if TYPE_CHECKING:
    from contrastive.registry import Registries


@hookimpl
def contrastive_register(registries: Registries):
    registries.protocols.register("knn", knn)
    registries.protocols.register("linear", linear)
    registries.protocols.register("linear_augmented", linear_augmented)
    registries.protocols.register("finetune", finetune)
