"""The dataset contract: :func:`dataset_info` gives every capability a dataset lacks its default,
wrappers forward through :class:`DatasetView`, and a plugin's dataset that subclasses nothing
(a plain object with the four members) trains and evaluates."""

from __future__ import annotations

import importlib
import pickle

import torch

from contrastive import recipe as recipes
from contrastive.components.datasets import (
    DatasetInfo,
    DatasetView,
    EpochPlan,
    TensorImageDataset,
    dataset_info,
    is_stream,
)
from contrastive.evaluation.holdout import IndexSubset, subset
from contrastive.training import fit
from contrastive.training.data import TrainingItems
from tests.helpers import tiny_recipe_dict


class DuckImages:
    """A plugin's dataset: no base class, the four members and ``len`` / ``dataset[i]`` only."""

    def __init__(self, train: bool = True, size: int = 16) -> None:
        generator = torch.Generator().manual_seed(0 if train else 1)
        self.labels = torch.arange(48) % 2
        images = torch.randint(0, 100, (48, 3, size, size), generator=generator, dtype=torch.uint8)
        images[self.labels == 1, 0] += 120  # class 1 is redder: kNN has something to find
        self._images = images
        self.num_channels, self.has_labels, self.classes = 3, True, ["dull", "red"]

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._images[index], int(self.labels[index])


class Bare:
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.zeros(1, 2, 2, dtype=torch.uint8), -1


def test_an_object_with_nothing_but_items_gets_every_default():
    info = dataset_info(Bare())
    assert isinstance(info, DatasetInfo)
    defaults = DatasetInfo()
    for name in ("num_channels", "image_size", "labels", "has_labels", "classes", "labels_hint", "paths",
                 "whole_image", "load_item", "images", "skipped_files", "subset", "stream"):
        assert getattr(info, name) is getattr(defaults, name), name
    assert info.reading_now() == [] and info.unreadable_indices() == [] and not is_stream(Bare())


def test_present_capabilities_are_read_and_bad_ones_count_as_absent():
    bare = Bare()
    bare.has_labels, bare.whole_image, bare.reading_now, bare.images = 0, 1, "not callable", [1, 2]
    info = dataset_info(bare)
    assert info.has_labels is False and info.whole_image is True
    assert info.reading_now() == [] and info.images is None
    data = TensorImageDataset(torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, -1]), ["a", "b"])
    info = dataset_info(data)
    assert info.num_channels == 1 and info.classes == ["a", "b"] and info.images is data.images
    assert info.labels.tolist() == [0, 1, -1]


def test_wrappers_forward_only_what_stays_true_and_survive_pickling():
    data = TensorImageDataset(torch.arange(4 * 2 * 2, dtype=torch.uint8).reshape(4, 1, 2, 2),
                              torch.tensor([0, 1, 0, 1]), ["a", "b"])
    data.reading_now = lambda: ["being read"]
    part = subset(data, [3, 0])
    assert isinstance(part, IndexSubset)
    info = dataset_info(part)
    assert info.classes == ["a", "b"] and info.num_channels == 1 and info.reading_now() == ["being read"]
    assert info.labels.tolist() == [1, 0] and info.images is None  # images index the whole dataset
    items = TrainingItems(DuckImages())
    assert dataset_info(items).skipped_files is None and dataset_info(items).reading_now() == []
    copy = pickle.loads(pickle.dumps(items))  # what a DataLoader worker gets
    assert torch.equal(copy[5][0], items[5][0]) and copy[5][2] == 5

    class Counting(DatasetView):
        forwarded = frozenset({"classes"})

    view = Counting(data)
    assert view.classes == ["a", "b"] and dataset_info(view).labels is None and len(view) == 4


def test_the_stream_contract_has_its_own_module():
    implementation = importlib.import_module("contrastive.components.datasets.webdataset")
    assert implementation.EpochPlan is EpochPlan  # the implementation imports it from stream.py
    assert EpochPlan(epoch=0, seed=0, rank=0, world=1, batch_size=2, batches=3).skip == 0


def test_a_duck_typed_dataset_trains_two_steps_and_evaluates(tmp_path, registries):
    registries.datasets.register("duck_images", DuckImages)
    raw = tiny_recipe_dict(str(tmp_path / "run"), max_steps=2, num_workers=0)
    raw["data"] = {"name": "duck_images", "args": {}}
    raw["eval"] = {"protocols": ["knn"], "baselines": [], "monitor_every": 0}
    results = fit(recipes.validate(raw, registries), registries)
    assert results["steps"] == 2
    assert 0.0 <= results["eval"]["knn_top1"] <= 1.0
