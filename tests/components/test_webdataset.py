"""The ``webdataset`` stream on shards written by ``contrastive shard``: items and ids, the split over
processes and workers (each process the same number of batches, also for uneven shards), seeded
epochs, the resume skip, sizes without an index, pipe: URLs, and the in-memory copy evaluation reads."""

from __future__ import annotations

import os
import sys
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from contrastive.components.datasets.webdataset import EpochPlan, ShardImages, WebDataset, webdataset
from contrastive.errors import DataError
from contrastive.recipe.trust import ALLOW_PIPE_ENV
from tests.helpers import image_folder, shard_folder

PER_SHARD = 8


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """48 labelled pictures (3 classes) in 6 shards of 8, with shards.json."""
    base = tmp_path_factory.mktemp("wds")
    shard_folder(image_folder(base / "folder"), base / "shards", shard_size=PER_SHARD)
    return base / "shards"


def urls(shards, count=6):
    return str(shards / f"train-{{000000..{count - 1:06d}}}.tar")


def reader_items(dataset, plan, worker, workers, monkeypatch):
    """What DataLoader worker ``worker`` of ``workers`` yields under ``plan`` (worker info faked)."""
    info = SimpleNamespace(id=worker, num_workers=workers)
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)
    dataset.start_epoch(plan)
    try:
        return list(dataset)
    finally:
        monkeypatch.undo()


def process_batches(dataset, plan, workers, monkeypatch):
    """The ids of a process's batches in DataLoader order: batch b is the next of worker b mod W."""
    per_worker = [reader_items(dataset, plan, w, workers, monkeypatch) for w in range(workers)]
    batches, taken = [], [0] * workers
    for b in range(plan.batches - plan.skip):
        w = b % workers
        chunk = per_worker[w][taken[w] * plan.batch_size : (taken[w] + 1) * plan.batch_size]
        taken[w] += 1
        batches.append([int(item[2]) for item in chunk])
    assert all(len(items) == taken[w] * plan.batch_size for w, items in enumerate(per_worker)), "a worker over- or under-ran"
    return batches


def test_items_are_uint8_images_with_cls_labels_and_dense_ids(shards):
    data = webdataset(urls(shards), image_size=12)
    assert isinstance(data, WebDataset) and len(data) == 48 and data.num_shards == 6
    assert data.has_labels and data.classes == ["a", "b", "c"]
    items = list(data)  # plain iteration: one epoch, one reader
    assert len(items) == 48 and sorted(int(i[2]) for i in items) == list(range(48))
    image, label, _, aspect = items[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 12, 12) and 0 <= label < 3
    assert aspect.dtype == torch.float32 and float(aspect) > 0  # crop whole: the source aspect ratio
    reds = [img[0].float().mean() > img[1:].float().mean() for img, label, *_ in items if label == 0]
    assert all(reds)  # class a's pictures are red: the labels belong to the images
    center = webdataset(urls(shards), image_size=12, crop="center")
    assert len(next(iter(center))) == 3


def test_every_process_gets_the_same_batches_and_each_sample_once(shards, monkeypatch):
    """6 equal shards, 2 processes × 3 workers: every sample exactly once per epoch."""
    data = webdataset(urls(shards), image_size=8)
    seen = []
    for rank in range(2):
        plan = EpochPlan(epoch=0, seed=0, rank=rank, world=2, batch_size=4, batches=48 // 8)
        batches = process_batches(data, plan, 3, monkeypatch)
        assert len(batches) == 6 and all(len(b) == 4 for b in batches)
        seen += [i for b in batches for i in b]
    assert sorted(seen) == list(range(48))


def test_uneven_shards_still_give_every_process_the_same_number_of_batches(shards, monkeypatch):
    """5 shards for 2 processes: one reads 3, the other 2 (16 samples for a 20-sample quota: it
    reads its shards again for the last 4, as documented)."""
    data = webdataset(urls(shards, 5), image_size=8)
    assert len(data) == 40
    batches_per_rank, by_rank = 40 // 10, {}
    for rank in range(2):
        plan = EpochPlan(epoch=0, seed=3, rank=rank, world=2, batch_size=5, batches=batches_per_rank)
        ids = [i for b in process_batches(data, plan, 1, monkeypatch) for i in b]
        assert len(ids) == 20
        by_rank[rank] = ids
    short = min(by_rank, key=lambda r: len(set(by_rank[r])))
    assert len(set(by_rank[short])) == 16 and max(Counter(by_rank[short]).values()) == 2
    assert len(set(by_rank[1 - short])) == 20  # 24 available: 4 left for this epoch
    assert not set(by_rank[0]) & set(by_rank[1])  # each reads its own shards


def test_epochs_are_seeded(shards, monkeypatch):
    data = webdataset(urls(shards), image_size=8)

    def order(epoch, seed=0):
        return process_batches(data, EpochPlan(epoch, seed, 0, 1, 8, 6), 1, monkeypatch)

    assert order(0) == order(0) and order(0) != order(1) and order(0) != order(0, seed=1)


@pytest.mark.parametrize("workers", [1, 2])
def test_resume_skips_exactly_the_batches_taken(shards, workers):
    """A real DataLoader: the epoch resumed after 3 batches gives the uninterrupted epoch's tail."""
    data = webdataset(urls(shards), image_size=8)
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=workers if workers > 1 else 0)
    data.start_epoch(EpochPlan(epoch=1, seed=0, rank=0, world=1, batch_size=4, batches=12))
    whole = [b[2].tolist() for b in loader]
    data.start_epoch(EpochPlan(epoch=1, seed=0, rank=0, world=1, batch_size=4, batches=12, skip=3))
    assert [b[2].tolist() for b in loader] == whole[3:]
    assert len(whole) == 12 and sorted(i for b in whole for i in b) == list(range(48))


def test_sizes_without_an_index_come_from_the_tar_headers(shards, tmp_path):
    for name in os.listdir(shards):
        if name.endswith(".tar"):
            os.symlink(shards / name, tmp_path / name)
    data = webdataset(urls(tmp_path), image_size=8)
    assert len(data) == 48 and data.has_labels and data.classes is None  # class names live in the index
    assert sorted(int(i[2]) for i in data) == list(range(48))


def test_list_of_urls_and_samples_per_epoch(shards):
    data = webdataset([str(shards / "train-000000.tar"), str(shards / "train-00000{1,2}.tar")], image_size=8,
                      samples_per_epoch=20)
    assert data.num_shards == 3 and len(data) == 20 and len(list(data)) == 20


def test_pipe_urls_are_refused_unless_the_user_allows_them(shards, monkeypatch):
    pipe = f"pipe:cat {shards}/train-00000{{0..5}}.tar"
    monkeypatch.delenv(ALLOW_PIPE_ENV, raising=False)
    with pytest.raises(DataError, match=r"pipe: URL, which runs a shell command.*--allow-pipe.*CONTRASTIVE_ALLOW_PIPE=1"):
        webdataset(pipe, image_size=8, samples_per_epoch=48)
    with pytest.raises(DataError, match="pipe: URL"):  # also behind a brace pattern
        webdataset(f"{{pipe:echo x,{shards}/train-000000.tar}}", image_size=8)
    monkeypatch.setenv(ALLOW_PIPE_ENV, "1")
    with pytest.raises(DataError, match="samples_per_epoch"):  # sizes of remote shards are not known...
        webdataset(pipe, image_size=8)
    data = webdataset(pipe, image_size=8, index=str(shards / "shards.json"))  # ... unless the index says
    assert len(data) == 48 and sorted(int(i[2]) for i in data) == list(range(48))


def test_missing_package_is_one_line_naming_the_install(shards, monkeypatch):
    monkeypatch.setitem(sys.modules, "webdataset", None)
    with pytest.raises(DataError, match=r"pip install webdataset"):
        webdataset(urls(shards))


def test_in_memory_copy_is_a_map_style_dataset_with_paths(shards):
    data = webdataset(urls(shards), image_size=8, crop="center", in_memory=True, in_memory_samples=20)
    assert isinstance(data, ShardImages) and len(data) == 20
    assert data.classes == ["a", "b", "c"] and data.labels.shape == (20,)
    image, label = data[5]
    assert image.shape == (3, 8, 8) and label == int(data.labels[5])
    assert data.paths[5].split("/")[0] == data.classes[label]  # path.txt: the file it was written from
    part = data.subset([5, 1])
    assert part.paths[0] == data.paths[5] and torch.equal(part[0][0], data[5][0])
