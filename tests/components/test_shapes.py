"""The generated ``shapes`` dataset: the dataset contract, determinism, its shapes' geometry, and
that raw pixels do not solve it (the reason it is the quickstart's data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastive.components.datasets import SHAPES_CLASSES, ShapesDataset
from contrastive.components.datasets.shapes import SHAPE_EXTENT, polygon_distance, shape_distance
from contrastive.errors import InvalidArgumentsError
from contrastive.evaluation.protocols import knn_classify
from contrastive.registry import Registries


def test_contract_sizes_and_balanced_labels():
    train = ShapesDataset(train=True, image_size=16, num_train=120, num_test=40)
    test = ShapesDataset(train=False, image_size=16, num_train=120, num_test=40)
    assert (len(train), len(test)) == (120, 40)
    image, label = train[3]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 16) and isinstance(label, int)
    assert train.images.shape == (120, 3, 16, 16) and train.num_channels == 3 and train.image_size == (16, 16)
    assert train.classes == SHAPES_CLASSES and len(SHAPES_CLASSES) == 10 and train.has_labels
    assert train.labels.dtype == torch.int64 and label == int(train.labels[3])
    assert torch.bincount(train.labels, minlength=10).tolist() == [12] * 10
    assert torch.bincount(test.labels, minlength=10).tolist() == [4] * 10
    assert repr(train) == "ShapesDataset(120 images, 3x16x16, 10 classes)"
    assert ShapesDataset(image_size=24, num_train=10).images.shape == (10, 3, 24, 24)


def test_same_arguments_same_images_other_seed_or_split_other_images():
    a = ShapesDataset(image_size=16, num_train=50)
    b = ShapesDataset(image_size=16, num_train=50)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(ShapesDataset(image_size=16, num_train=50, seed=1).images, a.images)
    test = ShapesDataset(train=False, image_size=16, num_test=50)
    train_rows = {bytes(row) for row in a.images.flatten(1).numpy()}
    assert not train_rows & {bytes(row) for row in test.images.flatten(1).numpy()}  # no image in both splits


def test_registered_and_the_test_split_is_train_false():
    from contrastive.components import datasets

    regs = Registries()
    datasets.contrastive_register(registries=regs)
    built = regs.datasets.build("shapes", train=False, image_size=8, num_test=30)
    assert isinstance(built, ShapesDataset) and len(built) == 30


@pytest.mark.parametrize("args, key", [
    ({"image_size": 4}, "image_size"), ({"image_size": 16.0}, "image_size"), ({"num_train": 0}, "num_train"),
    ({"num_test": True}, "num_test"), ({"distractors": -1}, "distractors"), ({"seed": -2}, "seed"),
])  # fmt: skip
def test_bad_arguments_name_the_argument(args, key):
    with pytest.raises(InvalidArgumentsError, match=f"shapes: {key} must be"):
        ShapesDataset(**args)


def test_polygon_distance_of_the_unit_square():
    square = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    px = torch.tensor([0.0, 0.5, 2.0, 2.0, 0.0])
    py = torch.tensor([0.0, 0.0, 0.0, 2.0, -1.0])
    expected = torch.tensor([-1.0, -0.5, 1.0, 2.0**0.5, 0.0])
    torch.testing.assert_close(polygon_distance(px, py, square), expected)


@pytest.mark.parametrize("name", SHAPES_CLASSES)
def test_every_shape_fits_its_frame_and_is_about_the_unit_disc_in_area(name):
    grid = torch.linspace(-1.6, 1.6, 321)
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    inside = shape_distance(name, x, y) < 0
    area = inside.float().mean().item() * 3.2**2
    assert 1.2 < area < 3.2, area  # the unit disc: 3.14
    assert (x[inside] ** 2 + y[inside] ** 2).sqrt().max() <= SHAPE_EXTENT


def test_the_shapes_are_distinct_silhouettes():
    """No two shapes share most of their area (same frame, no rotation): a sanity bound on the classes."""
    grid = torch.linspace(-1.2, 1.2, 121)
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    masks = {name: shape_distance(name, x, y) < 0 for name in SHAPES_CLASSES}
    for i, a in enumerate(SHAPES_CLASSES):
        for b in SHAPES_CLASSES[i + 1 :]:
            iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert iou < 0.85, (a, b, float(iou))


def test_raw_pixels_are_a_poor_classifier():
    train = ShapesDataset(train=True, image_size=16, num_train=1000, num_test=500)
    test = ShapesDataset(train=False, image_size=16, num_train=1000, num_test=500)
    scores = knn_classify(train.images.flatten(1).float(), train.labels, test.images.flatten(1).float(), test.labels,
                          num_classes=10, k=20)
    assert scores["top1"] < 0.35  # chance: 0.1; the quickstart's learned backbone: see docs/getting-started.md


def test_rendering_in_chunks_changes_no_image(monkeypatch):
    from contrastive.components.datasets import shapes

    whole = ShapesDataset(image_size=12, num_train=70).images
    monkeypatch.setattr(shapes, "RENDER_CHUNK", 16)
    assert torch.equal(ShapesDataset(image_size=12, num_train=70).images, whole)
