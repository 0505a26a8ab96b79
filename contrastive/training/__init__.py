"""Training: the loop (:func:`fit`), the step (GradCache), the run's parts and its side concerns.

``loop``: the flat loop; ``build``: recipe -> prepared :class:`~contrastive.training.build.Run`;
``parts``: dataset, views and the method with its injected parts; ``step``: one optimiser step;
``state``: the counters checkpoints restore; ``data``: dataset items -> :class:`Batch`;
``callbacks``: checkpointing, logging, online kNN, run record.
"""

from contrastive.training.loop import fit

__all__ = ["fit"]
