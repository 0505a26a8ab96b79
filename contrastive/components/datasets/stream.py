"""The stream contract: what the training loop needs of a dataset that streams (a
``torch.utils.data.IterableDataset`` such as ``webdataset``) — [`ImageStream`][contrastive.components.datasets.stream.ImageStream] — and the
[`EpochPlan`][contrastive.components.datasets.stream.EpochPlan] it is told before each epoch.  The loop's side is
`contrastive.training.streaming.StreamLoader`; ``webdataset`` implements it
(`contrastive.components.datasets.webdataset` states its epoch, split and resume rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class EpochPlan:
    """What the next ``iter(dataset)`` streams (set by the loop through ``start_epoch``): epoch
    ``epoch`` of a run seeded ``seed``, for process ``rank`` of ``world``, in ``batches`` batches
    of ``batch_size`` samples, the first ``skip`` of them already taken (a resumed run)."""

    epoch: int
    seed: int
    rank: int
    world: int
    batch_size: int
    batches: int
    skip: int = 0


class ImageStream(Protocol):
    """A stream of images (an ``IterableDataset``), as the loop reads it.

    - ``len(stream)``: the samples of one epoch (the loop trains ``len // global_batch`` steps);
    - ``num_shards: int``: how many readers it can feed (each process reads whole shards);
    - ``start_epoch(plan)``: what the next ``iter()`` yields in each DataLoader worker (that
      worker's share of ``plan``), whose items are ``(image, label, index[, source_aspect])``:
      ``image`` uint8 ``(C, H, W)``, ``label`` an int (``-1``: none), ``index`` the sample's
      stable global number, ``source_aspect`` a float32 scalar tensor when ``whole_image``;
    - ``first_item()`` -> ``(image, label, source_aspect)`` of its first sample (the loop probes
      the view sizes with it);
    - ``num_channels``, ``image_size``, ``has_labels``, ``classes``, ``whole_image`` as a map-style
      dataset has them (read through [`dataset_info`][contrastive.components.datasets.contract.dataset_info]),
      and no ``labels``.

    Its factory may name evaluation's test data with a ``test_split(args)`` attribute; evaluation
    reads a stream with ``in_memory: true`` (a map-style copy), as `contrastive.evaluation.data`
    describes.
    """

    num_channels: int
    has_labels: bool
    classes: list[str] | None
    whole_image: bool

    @property
    def num_shards(self) -> int: ...

    def __len__(self) -> int: ...

    def start_epoch(self, plan: EpochPlan) -> None: ...

    def first_item(self) -> tuple[torch.Tensor, int, float]: ...


def is_stream(dataset: Any) -> bool:
    """True when ``dataset`` streams (an ``IterableDataset``): the loop reads it through a
    ``StreamLoader``, not a sampler, and evaluation through an in-memory copy."""
    return isinstance(dataset, torch.utils.data.IterableDataset)
