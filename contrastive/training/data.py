"""What the loop reads: dataset items with their identity, collated into a :class:`Batch`."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from contrastive.errors import DataError
from contrastive.methods.base import Batch
from contrastive.views import match_channels


class TrainingItems(Dataset):
    """``(image, label, index)`` items of a dataset, plus ``source_aspect`` (a float32 scalar
    tensor) for whole-image data (``load_item``, ``image_folder`` ``crop: whole``), so that a
    DataLoader batch carries everything :class:`Batch` holds.

    The wrapped dataset keeps its bad-file bookkeeping (``skipped_files``, ``reading_now``,
    which ``guard_loader`` reads) and its shared memory.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.whole_image = bool(getattr(dataset, "whole_image", False))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple:
        if self.whole_image:
            image, label, aspect = self.dataset.load_item(index)
            return image, label, index, torch.tensor(aspect, dtype=torch.float32)
        image, label = self.dataset[index]
        return image, label, index

    def reading_now(self) -> list[str]:
        return self.dataset.reading_now() if hasattr(self.dataset, "reading_now") else []

    @property
    def skipped_files(self) -> Any:
        return getattr(self.dataset, "skipped_files", None)


def to_batch(items: list[torch.Tensor], in_chans: int) -> Batch:
    """A collated :class:`TrainingItems` batch (on the training device) as a :class:`Batch`."""
    aspect = items[3] if len(items) > 3 else None
    return Batch(images=match_channels(items[0], in_chans), labels=items[1].long(), index=items[2].long(),
                 source_aspect=aspect)


def check_labels(dataset: Any, data_name: str, method_name: str) -> None:
    """Before training: a method that needs labels gets data whose every image has one."""
    fix = ("give it labelled data (class sub-folders, or a dataset with labels), or train without labels "
           "with --method.name simclr")
    if not getattr(dataset, "has_labels", True):
        raise DataError(f"method '{method_name}' needs labelled images, and dataset '{data_name}' has no labels; {fix}")
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        unlabelled = int((torch.as_tensor(labels) < 0).sum())
        if unlabelled:
            raise DataError(
                f"method '{method_name}' needs a label for every image, and dataset '{data_name}' has {unlabelled} "
                f"unlabelled (of {len(dataset)}); {fix}"
            )
