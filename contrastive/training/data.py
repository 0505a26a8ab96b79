"""What the loop reads: dataset items with their identity, collated into a [`Batch`][contrastive.methods.base.Batch]; `guard_loader`
reports what goes wrong inside DataLoader workers in one line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from contrastive.components.augmentations.views import match_channels
from contrastive.components.datasets.contract import DatasetView, dataset_info
from contrastive.components.datasets.reporting import first_few
from contrastive.errors import ContrastiveError, DataError
from contrastive.methods.base import Batch


class TrainingItems(DatasetView):
    """``(image, label, index)`` items of a dataset, plus ``source_aspect`` (a float32 scalar
    tensor) for whole-image data (``load_item``, ``image_folder`` ``crop: whole``), so that a
    DataLoader batch carries everything [`Batch`][contrastive.methods.base.Batch] holds.

    The wrapped dataset keeps its bad-file bookkeeping (``skipped_files``, ``reading_now``,
    which ``guard_loader`` reads: forwarded) and its shared memory.
    """

    forwarded = frozenset({"skipped_files", "reading_now"})

    def __init__(self, dataset: Any) -> None:
        super().__init__(dataset)
        self.whole_image = dataset_info(dataset).whole_image

    def __getitem__(self, index: int) -> tuple:
        if self.whole_image:
            image, label, aspect = self.dataset.load_item(index)
            return image, label, index, torch.tensor(aspect, dtype=torch.float32)
        image, label = self.dataset[index]
        return image, label, index


def to_batch(items: list[torch.Tensor], in_chans: int, device: torch.device | None = None) -> Batch:
    """A collated `TrainingItems` batch (or a stream's) as a [`Batch`][contrastive.methods.base.Batch] on ``device``
    (Accelerate's loader has moved it there already; a stream's batch is moved here)."""
    if device is not None:
        items = [t.to(device, non_blocking=True) for t in items]
    aspect = items[3] if len(items) > 3 else None
    return Batch(images=match_channels(items[0], in_chans), labels=items[1].long(), index=items[2].long(),
                 source_aspect=aspect)


def check_labels(dataset: Any, data_name: str, method_name: str) -> None:
    """Before training: a method that needs labels gets data whose every image has one."""
    fix = ("give it labelled data (class sub-folders, or a dataset with labels), or train without labels "
           "with --method.name simclr")
    info = dataset_info(dataset)
    if not info.has_labels:
        raise DataError(f"method '{method_name}' needs labelled images, and dataset '{data_name}' has no labels; {fix}")
    labels = info.labels
    if labels is not None:
        unlabelled = int((torch.as_tensor(labels) < 0).sum())
        if unlabelled:
            raise DataError(
                f"method '{method_name}' needs a label for every image, and dataset '{data_name}' has {unlabelled} "
                f"unlabelled (of {len(dataset)}); {fix}"
            )


def _worker_message(exc: BaseException) -> str:
    """The original one-line message of an error that torch re-raised from a DataLoader worker
    (torch prefixes it with 'Caught X in DataLoader worker process N' and the worker's traceback)."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    name = type(exc).__name__
    for prefix in (f"{type(exc).__module__}.{name}: ", f"{name}: "):
        if last.startswith(prefix):
            return last[len(prefix) :]
    return last


def _shut_down(iterator: Any) -> None:
    """Stop a failed DataLoader iterator's workers now.  While the error travels up, its traceback
    keeps the iterator alive, and with it the worker pids that PyTorch's SIGCHLD handler watches:
    any later child exit (of an unrelated subprocess) would then raise "DataLoader worker killed"
    again, at a random point of the main process."""
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if callable(shutdown):
        try:
            shutdown()
        except Exception:  # noqa: BLE001  best effort: the original error is the one to report
            pass


def guard_loader(batches: Iterable, dataset: Any) -> Iterator:
    """Iterate ``batches`` (a DataLoader); report data errors raised inside worker processes as
    their own one-line message, and a worker that died with the file it was reading (when the
    dataset can tell, as [`ImageFolderDataset`][contrastive.components.datasets.folder.ImageFolderDataset] can: ``reading_now()``)."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except ContrastiveError as exc:
            _shut_down(iterator)
            if "Original Traceback" not in str(exc):
                raise
            raise type(exc)(_worker_message(exc)) from None
        except RuntimeError as exc:
            _shut_down(iterator)
            text = str(exc)
            if "DataLoader worker" not in text or ("exited unexpectedly" not in text and "killed by signal" not in text):
                raise
            reading = dataset_info(dataset).reading_now()
            where = f"while reading {first_few(reading)}" if reading else "(the file it was reading is not known)"
            raise DataError(
                f"a data loader worker died {where}: {text.splitlines()[0]}. A file that crashes the decoder "
                f"or exhausts memory: remove or re-encode it; rerun with --trainer.num_workers 0 to see the error "
                f"in the main process"
            ) from None
        yield batch
