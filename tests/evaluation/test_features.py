"""Images -> features: the eval transform and the frozen backbone."""

import torch
from torch import nn

from contrastive import recipe as recipes
from contrastive.evaluation.features import EvalTransform, extract_features
from contrastive.evaluation.protocols import linear_probe
from tests.helpers import tiny_recipe_dict


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
