"""Built-in evaluation protocols on frozen features, registered under ``protocols`` like a plugin's:
``knn`` and ``linear`` (`contrastive.evaluation.protocols` states the contract).
``label_free`` (alignment, uniformity, effective rank) needs augmented views rather than
features and labels, so it is run by the evaluation itself and is not an entry of this kind."""

from __future__ import annotations

from contrastive import hookimpl
from contrastive.evaluation.protocols import knn, linear


@hookimpl
def contrastive_register(registries):
    registries.protocols.register("knn", knn)
    registries.protocols.register("linear", linear)
