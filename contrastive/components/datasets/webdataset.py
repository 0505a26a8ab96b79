"""``webdataset``: images streamed from tar shards ([`WebDataset`][contrastive.components.datasets.webdataset.WebDataset]), or read from them into
memory for evaluation ([`ShardImages`][contrastive.components.datasets.webdataset.ShardImages]).  Needs the optional ``webdataset`` package
(``pip install webdataset``, or the ``wds`` extra of contrastive-ssl).

The stream's epoch, split and resume rule (what the training loop relies on; docs/own-images.md
"Sharded data" states it for users):

* **Epoch.** ``len(dataset)`` samples: ``samples_per_epoch``, else the shards' total (from the
  ``shards.json`` index ``contrastive shard`` writes, or a scan of local tar headers).  The loop
  trains ``len(dataset) // global_batch`` steps per epoch, the same number on every process.
* **Split.** Epoch ``e`` orders the shards by a permutation drawn from ``(seed, e)``, the same on
  every process.  With ``P`` processes and ``W`` DataLoader workers each (``W`` = 1 without
  workers) there are ``P·W`` readers; reader ``r = rank·W + w`` reads the shards at positions
  ``r, r + P·W, r + 2·P·W, ...`` of that order, through a shuffle buffer of ``shuffle_buffer``
  samples seeded from ``(seed, e, r)``.  The loop's batch ``b`` of a process comes from its worker
  ``b mod W`` (PyTorch's round robin), so each reader yields exactly the samples of its batches:
  its *quota*.  A reader whose shards hold fewer samples than its quota reads them again from
  the start (those samples are seen twice that epoch); one whose shards hold more leaves the rest
  for that epoch.  With equal shards, a shard count that is a multiple of ``P·W`` and a total
  divisible by the global batch, every sample is seen exactly once per epoch.
* **Resume.** A run resumed ``k`` steps into an epoch replays that epoch's shard order and
  buffers from the seed and skips, per reader, the samples of the batches it had already given —
  before decoding them — so the resumed run sees exactly the batches the uninterrupted run would
  have seen (same number of processes and workers).  Undecodable samples among the skipped ones
  are the exception: each shifts that reader's stream back by one sample (one sample of the epoch
  is then seen twice).
* **Identity.** Each sample's ``index`` (the Batch contract's sample id) is its global number:
  the samples of the shards before it (in the order of ``urls``) plus its position in its shard;
  without known shard sizes, ``shard number × 2**32 + position``.
"""

from __future__ import annotations

import io
import itertools
import multiprocessing
import random
import re
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import IterableDataset

from contrastive.components.datasets.folder import (
    ImageFolderDataset,
    ImageModeError,
    UndecodableImage,
    check_image_args,
    decode_image,
)
from contrastive.components.datasets.reporting import (
    REPORT_FIRST,
    WORKER_SLOTS,
    first_few,
    warn,
    warn_once,
    worker_slot,
)
from contrastive.components.datasets.shard_source import (
    INDEX_NAME,
    RawSample,
    ShardSet,
    expand_urls,
    find_index,
    import_webdataset,
    index_split,
    one_line,
    read_shard,
    resolve_shards,
)
from contrastive.components.datasets.stream import EpochPlan
from contrastive.errors import DataError, InvalidArgumentsError


def shard_order(count: int, seed: int, epoch: int) -> list[int]:
    """The shard numbers ``0..count-1`` in epoch ``epoch``'s order (the same on every process)."""
    order = list(range(count))
    random.Random(f"webdataset-shards:{seed}:{epoch}").shuffle(order)
    return order


def reader_share(reader: int, readers: int, batches: int) -> int:
    """How many of batches ``0..batches-1`` are reader ``reader``'s (batch b is reader b mod readers')."""
    return len(range(reader, batches, readers))


_NAME_BYTES = 240


class SkipBook:
    """Bad samples and damaged shards found by the main process and its DataLoader workers, in
    shared memory: one flag per sample id (when the shards' sizes are known: a sample found bad is
    then counted once and not decoded again) and per shard, occurrences of bad samples otherwise,
    the first name each worker found, and the shard each worker is reading now.  Each worker
    writes only its own slot and the flags of its own shards (readers never share a shard)."""

    def __init__(self, samples: int | None, shards: int) -> None:
        self._bad = multiprocessing.RawArray("b", samples or 0)
        self._bad_shards = multiprocessing.RawArray("b", shards)
        self._unknown = multiprocessing.RawArray("q", WORKER_SLOTS)  # bad samples without a known id
        self._names = multiprocessing.RawArray("c", WORKER_SLOTS * _NAME_BYTES)
        self._reading = multiprocessing.RawArray("q", WORKER_SLOTS)
        self._view("_reading")[:] = -1

    def _view(self, name: str) -> np.ndarray:
        array = getattr(self, name)
        return np.frombuffer(array, dtype=np.int64 if name in ("_unknown", "_reading") else np.int8)

    def known_bad(self, sample_id: int) -> bool:
        return 0 <= sample_id < len(self._bad) and bool(self._bad[sample_id])

    def add_sample(self, sample_id: int, name: str) -> bool:
        """Record a bad sample; False when it was already recorded."""
        if 0 <= sample_id < len(self._bad):
            if self._bad[sample_id]:
                return False
            self._bad[sample_id] = 1
        else:
            self._view("_unknown")[worker_slot()] += 1
        self._name(name)
        return True

    def add_shard(self, number: int, name: str) -> bool:
        """Record a damaged shard; False when it was already recorded."""
        if self._bad_shards[number]:
            return False
        self._bad_shards[number] = 1
        self._name(name)
        return True

    def _name(self, name: str) -> None:
        slot = worker_slot()
        if bytes(self._names[slot * _NAME_BYTES : slot * _NAME_BYTES + 1]) == b"\0":  # this slot's first
            encoded = name.encode("utf-8", "replace")[: _NAME_BYTES - 1]
            self._names[slot * _NAME_BYTES : slot * _NAME_BYTES + len(encoded)] = encoded

    def count(self) -> int:
        return int(self._view("_bad").sum() + self._view("_bad_shards").sum() + self._view("_unknown").sum())

    def first(self) -> list[str]:
        raw = bytes(self._names)
        names = (raw[s * _NAME_BYTES : (s + 1) * _NAME_BYTES].rstrip(b"\0") for s in range(WORKER_SLOTS))
        return [n.decode("utf-8", "replace") for n in names if n]

    def reading(self, shard: int) -> None:
        self._view("_reading")[worker_slot()] = shard

    def reading_now(self) -> list[int]:
        return [int(s) for s in self._view("_reading") if s >= 0]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if multiprocessing.context.get_spawning_popen() is None:  # a copy, not a worker: its own memory
            state = {key: bytearray(bytes(value)) for key, value in state.items()}
        return state


class WebDataset(IterableDataset):
    """Images streamed from webdataset tar shards: ``(image, label, index)`` items, plus the
    source aspect ratio (a float32 scalar tensor) with ``crop: whole`` — what the training loop
    collates into a Batch.  ``image``: ``(channels, image_size, image_size)`` uint8, decoded as
    ``image_folder`` decodes files; ``label``: the sample's ``cls`` field (−1 without one);
    ``index``: the sample's stable global number.  See the module docstring for the epoch, the
    split over processes and workers, and the resume rule.

    Attributes as for the other datasets: ``num_channels``, ``image_size``, ``classes`` (from the
    index; None when unknown or unlabelled), ``has_labels`` (samples with a ``cls`` field, per the
    index or the tar headers, else whether the first sample has one), ``whole_image``, ``skipped_files``,
    ``reading_now()``; ``len()`` is the samples of one epoch; ``num_shards``."""

    _name = "webdataset"

    def __init__(
        self,
        urls: str | list[str],
        image_size: int = 224,
        channels: int = 3,
        crop: Literal["whole", "center"] = "whole",
        samples_per_epoch: int | None = None,
        shuffle_buffer: int = 1000,
        index: str | None = None,
        strict: bool = False,
    ) -> None:
        check_image_args(self._name, image_size, channels, strict, crop)
        for key, value in (("samples_per_epoch", samples_per_epoch), ("shuffle_buffer", shuffle_buffer)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidArgumentsError(f"{self._name}: {key} must be a positive int, got {value!r}")
        import_webdataset()
        self.urls = urls
        self.source: ShardSet = resolve_shards(urls, f"{self._name}: urls", index, strict)
        self.shards = self.source.shards
        self.num_channels, self.image_size = channels, (image_size, image_size)
        self.crop, self.whole_image, self.strict = crop, crop == "whole", strict
        self.shuffle_buffer = shuffle_buffer
        self._book = SkipBook(self.source.total, len(self.shards))
        self._plan: EpochPlan | None = None
        self._first: tuple[torch.Tensor, int, float] | None = None
        for problem in self.source.damaged:
            warn_once(f"{self._name}: skipping shard {problem}")
        total = self.source.total
        if samples_per_epoch is None and total is None:
            raise DataError(
                f"{self._name}: cannot tell how many samples {self.urls!r} hold (no {INDEX_NAME} index beside them and "
                f"they are not local files); pass --data.args.samples_per_epoch N (the samples of one epoch) or "
                f"--data.args.index PATH/{INDEX_NAME}"
            )
        self.samples_per_epoch = samples_per_epoch if samples_per_epoch is not None else total
        labelled = self.source.labelled
        self.has_labels = labelled > 0 if labelled is not None else self._first_raw().label >= 0
        self.classes = self.source.classes if self.has_labels else None
        self.labels_hint = None if self.has_labels else "its samples have no cls field"

    @property
    def num_shards(self) -> int:
        return len(self.shards)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def start_epoch(self, plan: EpochPlan) -> None:
        """What the next ``iter()`` streams (in each DataLoader worker: that worker's share)."""
        self._plan = plan

    def __iter__(self) -> Iterator[tuple]:
        plan = self._plan or EpochPlan(epoch=0, seed=0, rank=0, world=1, batch_size=1, batches=len(self))
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        reader = (worker + plan.skip) % workers  # after k batches, DataLoader worker 0 gives batch k
        readers = plan.world * workers
        slot = plan.rank * workers + reader
        shards = [self.shards[i] for i in shard_order(len(self.shards), plan.seed, plan.epoch)[slot::readers]]
        if not shards:
            raise DataError(f"{self._name}: {len(self.shards)} shard(s) cannot feed {readers} readers ({plan.world} "
                            f"process(es) × {workers} worker(s)); write more shards or use fewer workers")
        skipped = reader_share(reader, workers, plan.skip)
        quota = (reader_share(reader, workers, plan.batches) - skipped) * plan.batch_size
        if quota <= 0:
            return
        rng = random.Random(f"webdataset-buffer:{plan.seed}:{plan.epoch}:{slot}")
        stream = self._passes(shards, rng)
        given = 0
        try:
            for sample in itertools.islice(stream, skipped * plan.batch_size, None):  # skipped: not decoded
                item = self._item(sample)
                if item is not None:
                    yield item
                    given += 1
                    if given == quota:
                        return
        finally:
            stream.close()
            self._book.reading(-1)

    def _passes(self, shards: list, rng: random.Random) -> Iterator[RawSample]:
        """The raw samples of ``shards``, pass after pass, each pass in order through the shuffle
        buffer (drained at the end of a pass, so that a sample never meets its own repeat there)."""
        shuffle = import_webdataset().filters.shuffle(self.shuffle_buffer, self.shuffle_buffer, rng=rng)
        while True:
            found = 0
            for sample in shuffle(self._one_pass(shards)):
                found += 1
                yield sample
            if not found:
                raise DataError(
                    f"{self._name}: no readable sample in shard(s) {first_few(s.url for s in shards)} (this reader's share "
                    f"of {self.urls!r}); check them with `tar tf SHARD`, or write them again with `contrastive shard`"
                )

    def _one_pass(self, shards: list) -> Iterator[RawSample]:
        for shard in shards:
            self._book.reading(shard.number)
            yield from read_shard(shard, self._shard_problem)

    def _shard_problem(self, problem: str) -> None:
        if self.strict:
            raise DataError(f"{self._name}: cannot read shard {problem} [data.args.strict is true; set it false to skip]")
        number = self._reading_shard()
        if self._book.add_shard(number, f"shard {problem}"):
            self._warn_bad(f"shard {problem}")

    def _reading_shard(self) -> int:
        return int(self._book._view("_reading")[worker_slot()])

    def _warn_bad(self, what: str) -> None:
        count = self._book.count() + len(self.source.damaged)
        if count <= REPORT_FIRST:
            warn(f"skipping {what}" + (" (further bad samples are counted, not listed)" if count == REPORT_FIRST else ""))

    def decode(self, sample: RawSample) -> tuple[torch.Tensor, float]:
        """``(image, source_aspect)`` of ``sample``; [`DataError`][contrastive.errors.DataError] when it cannot be decoded."""
        try:
            return decode_image(io.BytesIO(sample.image), self.image_size[0], self.num_channels, self.whole_image)
        except UndecodableImage as exc:
            cause = exc.__cause__ or exc
            raise DataError(f"{self._name}: cannot decode {self.where(sample)}: {type(cause).__name__}: "
                            f"{one_line(_without_buffer(cause))} (a damaged image in a shard)") from None
        except ImageModeError as exc:
            raise DataError(f"{self._name}: cannot convert {self.where(sample)} (mode {exc.mode}) to RGB/L: {exc}") from None

    def where(self, sample: RawSample) -> str:
        """``sample`` for messages: its name, and the shard it is in when the name is a file path."""
        url = self.shards[sample.shard].url
        return sample.name if sample.name.startswith(url) else f"{sample.name} in {url}"

    def _item(self, sample: RawSample) -> tuple | None:
        """The training item of ``sample``, or None when it cannot be decoded (recorded and warned)."""
        if self._book.known_bad(sample.id):
            return None
        try:
            image, aspect = self.decode(sample)
        except DataError as exc:
            if self.strict:
                raise DataError(f"{exc} [data.args.strict is true; set it false to skip such samples]") from None
            what = str(exc).removeprefix(f"{self._name}: cannot decode ")
            if self._book.add_sample(sample.id, what):
                self._warn_bad(what)
            return None
        if self.whole_image:
            return image, sample.label, sample.id, torch.tensor(aspect, dtype=torch.float32)
        return image, sample.label, sample.id

    def _first_raw(self) -> RawSample:
        for shard in self.shards:
            for sample in read_shard(shard, lambda problem: None):
                return sample
        raise DataError(f"{self._name}: the shards of {self.urls!r} hold no image samples; write shards with "
                        f"`contrastive shard FOLDER OUT/`")

    def first_item(self) -> tuple[torch.Tensor, int, float]:
        """``(image, label, source_aspect)`` of the first decodable sample, in the order of ``urls``
        (the loop probes the view sizes with it)."""
        if self._first is None:
            for shard in self.shards:
                for sample in read_shard(shard, lambda problem: None):
                    try:
                        image, aspect = self.decode(sample)
                    except DataError:
                        continue
                    self._first = (image, sample.label, aspect)
                    return self._first
            raise DataError(f"{self._name}: no sample of {self.urls!r} could be decoded; check that the shards hold images")
        return self._first

    @property
    def skipped_files(self) -> dict[str, Any]:
        """Bad shards and samples found so far (here and in DataLoader workers): ``{"count": n,
        "first": [names]}`` (the first per worker)."""
        first = list(self.source.damaged) + self._book.first()
        return {"count": len(self.source.damaged) + self._book.count(), "first": first[:REPORT_FIRST]}

    def reading_now(self) -> list[str]:
        """The shards being read right now by this process or its DataLoader workers."""
        return [self.shards[n].url for n in self._book.reading_now() if 0 <= n < len(self.shards)]

    def __repr__(self) -> str:
        kinds = f"{len(self.classes)} classes" if self.classes else ("labelled" if self.has_labels else "unlabeled")
        return (f"WebDataset({self.urls!r}, {len(self.shards)} shards, {len(self)} samples per epoch, "
                f"{self.num_channels}x{self.image_size[0]}x{self.image_size[1]}, {kinds}, crop={self.crop})")


def _without_buffer(exc: BaseException) -> str:
    """PIL's message without the ``<_io.BytesIO object at 0x...>`` it names for in-memory files."""
    return re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(exc))


class SampleNames(Sequence):
    """The name of each kept sample (``names[rows[i]]``), with `select` for ``subset``."""

    def __init__(self, names: list[str], rows: np.ndarray) -> None:
        self.names, self.rows = names, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.names[int(self.rows[index])]

    def select(self, indices: list[int]) -> SampleNames:
        return SampleNames(self.names, self.rows[indices] if len(indices) else self.rows[:0])


class ShardImages(ImageFolderDataset):
    """The samples of tar shards read into memory — their *encoded* bytes, in the order of the
    shards and within them — as a map-style dataset that decodes each image when it is read,
    exactly as ``image_folder`` does (``crop``, modes, EXIF; undecodable images skipped and
    counted unless ``strict``).  What evaluation reads of ``webdataset`` data (``in_memory: true``).
    ``max_samples`` caps how many are read (None: all); ``paths``: each sample's ``path.txt``
    field (the file ``contrastive shard`` wrote it from), else ``URL#KEY``."""

    _name = "webdataset"

    def __init__(
        self,
        urls: str | list[str],
        image_size: int = 224,
        channels: int = 3,
        crop: Literal["whole", "center"] = "whole",
        index: str | None = None,
        strict: bool = False,
        max_samples: int | None = None,
    ) -> None:
        self._check_args(image_size, channels, strict, crop)
        import_webdataset()
        source = resolve_shards(urls, f"{self._name}: urls", index, strict)
        problems = list(source.damaged)

        def shard_problem(problem: str) -> None:
            if strict:
                raise DataError(f"{self._name}: cannot read shard {problem} [data.args.strict is true; set it false to skip]")
            problems.append(problem)

        images, labels, names = [], [], []
        for shard in source.shards:
            for sample in read_shard(shard, shard_problem):
                if max_samples is not None and len(images) >= max_samples:
                    break
                images.append(sample.image)
                labels.append(sample.label)
                names.append(sample.name)
        for problem in problems:
            warn_once(f"{self._name}: skipping shard {problem}")
        if not images:
            raise DataError(f"{self._name}: the shards of {urls!r} hold no image samples; write shards with "
                            f"`contrastive shard FOLDER OUT/`")
        labelled = any(label >= 0 for label in labels)
        classes = source.classes if labelled else None
        if labelled and classes is None:
            classes = [str(c) for c in range(max(labels) + 1)]
        self._images = images
        self.urls = urls
        self._setup(str(urls), SampleNames(names, np.arange(len(names))), labels, classes, image_size, channels, strict,
                    crop, [f"shard {p}" for p in problems], "its samples have no cls field")

    def read(self, index: int) -> tuple[torch.Tensor, float]:
        row = int(self.paths.rows[index])
        return self.decode(self.paths[index], io.BytesIO(self._images[row]))

    def _unreadable(self, path: str, exc: Exception) -> DataError:
        return DataError(f"{self._name}: cannot decode {path}: {type(exc).__name__}: {_without_buffer(exc)} (a damaged "
                         f"image in a shard)")

    def __repr__(self) -> str:
        kinds = f"{len(self.classes)} classes" if self.classes is not None else "unlabeled"
        return f"ShardImages({self.urls!r}, {len(self)} images in memory, {kinds}, crop={self.crop})"


def webdataset(
    urls: str | list[str],
    image_size: int = 224,
    channels: int = 3,
    crop: Literal["whole", "center"] = "whole",
    samples_per_epoch: int | None = None,
    shuffle_buffer: int = 1000,
    test_urls: str | list[str] | None = None,
    index: str | None = None,
    strict: bool = False,
    in_memory: bool = False,
    in_memory_samples: int | None = 10000,
):
    """Images from webdataset tar shards, streamed (an IterableDataset split over processes and
    DataLoader workers by shard; see docs/own-images.md "Sharded data").

    ``urls``: the shards: local paths, ``file:``/``http(s)://``/``gs://`` URLs, brace patterns
    (``shards/train-{000000..000099}.tar``) and ``::`` lists, or a list of them; ``pipe:CMD`` URLs
    only when the user allows them (``contrastive --allow-pipe ...`` or ``CONTRASTIVE_ALLOW_PIPE=1``;
    never from a recipe).  A sample's image is its jpg/jpeg/png/webp/bmp/tif/tiff/gif field, its
    label its ``cls`` field (−1 without one).  Decoded like ``image_folder``: ``channels``,
    ``image_size``, ``crop`` (``whole``: squashed, aspect kept aside; ``center``).
    ``samples_per_epoch``: the samples of one epoch (default: the shards' total, from the
    ``shards.json`` index ``contrastive shard`` writes, or counted from local tar headers; needed
    for remote shards without an index, or pass ``index``: the path of their ``shards.json``).
    ``shuffle_buffer``: samples each reader mixes (1: none).  Bad samples and damaged shards are
    skipped and counted unless ``strict``.  ``test_urls``: shards for evaluation's test data
    (default: the ``test`` split of the index, written by ``contrastive shard --holdout``).
    ``in_memory``: read the shards' encoded samples into memory (at most ``in_memory_samples``;
    null: all) as a map-style dataset instead of streaming — what evaluation does.
    """
    if in_memory:
        return ShardImages(urls, image_size=image_size, channels=channels, crop=crop, index=index, strict=strict,
                           max_samples=in_memory_samples)
    return WebDataset(urls, image_size=image_size, channels=channels, crop=crop, samples_per_epoch=samples_per_epoch,
                      shuffle_buffer=shuffle_buffer, index=index, strict=strict)


def test_split(args: dict[str, Any]) -> dict[str, Any] | None:
    """The ``webdataset`` args of evaluation's test data for training data ``args``: the shards of
    ``test_urls``, else the ``test`` split of the training shards' index; None when there are none.
    (Evaluation reads the factory's ``test_split`` attribute: see contrastive.evaluation.data.)"""
    test = args.get("test_urls")
    if test is None:
        urls = args.get("urls")
        if not isinstance(urls, (str, list)) or not urls:
            return None
        path = find_index(expand_urls(urls, "webdataset: urls"), args.get("index"))
        test = index_split(path, "test") if path else []
        if not test:
            return None
    # checked now (contrastive check): pipe: URLs refused, local shards present
    resolve_shards(test, "webdataset: test_urls", None, bool(args.get("strict", False)))
    return {**args, "urls": test, "test_urls": None}


webdataset.test_split = test_split  # type: ignore[attr-defined]
