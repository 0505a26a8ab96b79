"""Training: the loop ([`fit`][contrastive.training.loop.fit]), the step (GradCache), the run's parts and its side concerns.

``loop``: the flat loop; ``build``: recipe -> prepared `Run`;
``parts``: dataset, views and the method with its injected parts; ``step``: one optimiser step;
``state``: the counters checkpoints restore; ``data``: dataset items -> [`Batch`][contrastive.methods.base.Batch];
``callbacks``: checkpointing, logging, online kNN, run record.
"""

from contrastive.training.loop import fit

__all__ = ["fit"]
