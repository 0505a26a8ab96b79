"""Evaluation protocols on synthetic data with known answers, the frozen backbone, eval-data defaults."""

import pytest
import torch
from torch import nn

from contrastive import recipe as recipes
from contrastive.errors import RecipeError
from contrastive.evaluate import (
    EvalTransform,
    eval_data_components,
    extract_features,
    knn_classify,
    linear_probe,
    random_init_backbone,
)

from .conftest import tiny_recipe_dict


def clusters(n_per_class: int, num_classes: int = 10, dim: int = 32, spread: float = 0.05, seed: int = 0):
    """Points around ``num_classes`` random unit centres: well separated for a small spread."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(num_classes, dim, generator=g), dim=1)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    points = centres[labels] + spread * torch.randn(len(labels), dim, generator=g)
    perm = torch.randperm(len(labels), generator=g)
    return points[perm], labels[perm]


def split(x, y, n_train):
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def test_knn_separated_clusters_is_perfect():
    tr_x, tr_y, te_x, te_y = split(*clusters(60), 400)
    scores = knn_classify(tr_x, tr_y, te_x, te_y, num_classes=10, k=200, temperature=0.1)
    assert scores["top1"] == 1.0 and scores["top5"] == 1.0


def test_knn_shuffled_labels_is_chance():
    """Labels that carry no information about the features: accuracy ~ 1/10."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3000, 32, generator=g), torch.randint(0, 10, (3000,), generator=g)
    top1 = knn_classify(x[:2000], y[:2000], x[2000:], y[2000:], num_classes=10)["top1"]
    assert abs(top1 - 0.1) < 0.04


def test_knn_k_is_clamped_and_chunks_agree(monkeypatch):
    tr_x, tr_y, te_x, te_y = split(*clusters(5, spread=0.8), 30)
    full = knn_classify(tr_x, tr_y, te_x, te_y, num_classes=10, k=200)  # k > 30 train points
    import contrastive.evaluate as ev

    monkeypatch.setattr(ev, "KNN_CHUNK_ELEMENTS", 30 * 3)  # 3 test rows per chunk
    assert knn_classify(tr_x, tr_y, te_x, te_y, num_classes=10, k=200) == full


def test_linear_probe_known_answers():
    tr_x, tr_y, te_x, te_y = split(*clusters(60), 400)
    scores = linear_probe(tr_x, tr_y, te_x, te_y, num_classes=10, max_iter=200)
    assert scores["top1"] == 1.0 and scores["weight_decay"] > 0
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(1500, 32, generator=g), torch.randint(0, 10, (1500,), generator=g)
    chance = linear_probe(x[:1000], y[:1000], x[1000:], y[1000:], num_classes=10, max_iter=200)["top1"]
    assert abs(chance - 0.1) < 0.05
    fixed = linear_probe(tr_x, tr_y, te_x, te_y, num_classes=10, max_iter=50, weight_decay=0.0)
    assert set(fixed) == {"top1", "top5", "weight_decay"} and fixed["weight_decay"] == 0.0


def test_no_top5_for_few_classes():
    tr_x, tr_y, te_x, te_y = split(*clusters(40, num_classes=4), 120)
    assert set(knn_classify(tr_x, tr_y, te_x, te_y, num_classes=4)) == {"top1"}


def test_features_leave_the_backbone_frozen(registries):
    """Feature extraction and the linear probe never change the backbone (peers have shipped
    'linear evaluation' that fine-tuned it) and restore its train/eval mode."""
    backbone = registries.backbones.build("test_resnet", cifar_stem=True)
    backbone.train()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}  # BN running stats included
    images = torch.randint(0, 256, (40, 1, 12, 12), dtype=torch.uint8)
    labels = torch.arange(40) % 4

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, i):
            return images[i], int(labels[i])

    transform = EvalTransform(in_chans=3, size=(16, 16))
    feats, ys = extract_features(backbone, Data(), transform, batch_size=16)
    assert feats.shape == (40, backbone.num_features) and feats.dtype == torch.float32 and torch.equal(ys, labels)
    assert not feats.requires_grad
    linear_probe(feats[:30], ys[:30], feats[30:], ys[30:], num_classes=4, max_iter=20)
    assert backbone.training
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in backbone.parameters())


def test_transform_repeats_gray_resizes_and_normalizes(registries):
    norm = registries.augmentations.build("normalize", mean=[0.5], std=[0.25])
    x = torch.full((2, 1, 8, 8), 255, dtype=torch.uint8)
    out = EvalTransform(3, (16, 16), norm)(x)
    assert out.shape == (2, 3, 16, 16) and torch.allclose(out, torch.full_like(out, 2.0))
    raw = EvalTransform(3, (16, 16), norm)(x, backbone_input=False)
    assert raw.shape == (2, 1, 16, 16) and torch.allclose(raw, torch.ones_like(raw))


def test_transform_from_recipe_uses_view_size_and_keeps_rng(registries, tmp_path):
    recipe = recipes.validate(tiny_recipe_dict(str(tmp_path)), registries)
    recipe.augmentation[0].args["size"] = 12
    recipe.augmentation.append(recipes.Component("normalize", {"mean": [0.5], "std": [0.5]}))
    state = torch.get_rng_state()
    transform = EvalTransform.from_recipe(recipe, registries, torch.zeros(1, 16, 16, dtype=torch.uint8))
    assert torch.equal(state, torch.get_rng_state())
    assert transform.size == (12, 12) and transform.in_chans == 3 and transform.normalize is not None


def test_random_init_is_seeded(registries, tmp_path):
    recipe = recipes.validate(tiny_recipe_dict(str(tmp_path)), registries)
    a, b = random_init_backbone(recipe, registries), random_init_backbone(recipe, registries)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize(
    "data, train_args, test_args",
    [
        ({"name": "digits", "args": {"image_size": 16}}, {"image_size": 16, "train": True}, {"image_size": 16, "train": False}),
        ({"name": "stl10", "args": {"split": "unlabeled"}}, {"split": "train"}, {"split": "test"}),
        ({"name": "imagenet", "args": {"root": "x", "crop": "whole"}},  # eval: the standard centre crop
         {"root": "x", "split": "train", "crop": "center"}, {"root": "x", "split": "val", "crop": "center"}),
    ],
)
def test_default_eval_data(registries, tmp_path, data, train_args, test_args):
    raw = tiny_recipe_dict(str(tmp_path))
    raw["data"] = data
    train, test = eval_data_components(recipes.validate(raw, registries), registries)
    assert (train.name, train.args, test.args) == (data["name"], train_args, test_args)


def test_eval_data_that_cannot_be_derived(registries, tmp_path):
    raw = tiny_recipe_dict(str(tmp_path))
    raw["data"] = {"name": "image_folder", "args": {"root": str(tmp_path)}}
    with pytest.raises(RecipeError, match="eval.train_data and eval.test_data"):
        eval_data_components(recipes.validate(raw, registries), registries)
    raw["eval"] = {"train_data": {"name": "digits"}, "test_data": {"name": "digits", "args": {"train": False}}}
    train, test = eval_data_components(recipes.validate(raw, registries), registries)
    assert train.name == "digits" and test.args == {"train": False}


@pytest.mark.parametrize(
    "section, message",
    [
        ({"protocols": ["knn", "lineer"]}, "did you mean 'linear'"),
        ({"knn_temprature": 0.1}, "did you mean 'knn_temperature'"),
        ({"knn_k": 0}, "knn_k must be at least 1"),
        ({"linear_weight_decay": "big"}, "linear_weight_decay should be"),
        ({"test_data": {"name": "digitz"}}, "eval.test_data: unknown dataset 'digitz'"),
    ],
)
def test_eval_section_validation(registries, tmp_path, section, message):
    raw = tiny_recipe_dict(str(tmp_path))
    raw["eval"] = section
    with pytest.raises(RecipeError, match=message):
        recipes.validate(raw, registries)


def test_frozen_features_do_not_need_grad_modules():
    # a backbone whose forward would fail if autograd were on for its input (sanity of no_grad)
    class Probe(nn.Module):
        num_features = 2

        def forward(self, x):
            assert not torch.is_grad_enabled()
            return x.flatten(1)[:, :2]

    data = [(torch.zeros(1, 4, 4, dtype=torch.uint8), 0)] * 3
    feats, _ = extract_features(Probe(), data, EvalTransform(1, None), batch_size=2)
    assert feats.shape == (3, 2)
