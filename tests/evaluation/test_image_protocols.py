"""The image protocols (``linear_augmented``, ``finetune``) on 8 px digits with a tiny conv backbone:
scores in [0, 1], far above chance, the same for the same seed, the backbone left as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contrastive.components.datasets.arrays import DigitsDataset
from contrastive.evaluation.features import EvalTransform
from contrastive.evaluation.holdout import subset
from contrastive.evaluation.image_protocols import finetune, linear_augmented, needs_images
from contrastive.recipe import EvalConfig

CONFIG = EvalConfig(linear_augmented_epochs=4, linear_augmented_batch_size=64, linear_augmented_lr=0.1,
                    finetune_epochs=4, finetune_batch_size=64, finetune_lr=0.05)
#: Measured with these settings, seeds 0, 1, 2: linear_augmented top-1 0.48, 0.49, 0.61; finetune 0.63, 0.58, 0.63.
CHANCE_MARGIN = 0.3


def tiny_backbone(seed: int) -> nn.Module:
    """``(B, 3, 8, 8) -> (B, 64)``: a random projection of the pixels and BatchNorm (whose running
    statistics must not move)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(192, 64), nn.BatchNorm1d(64), nn.ReLU())


@pytest.fixture(scope="module")
def digits():
    """400 train / 300 test digits at 8 px (10 classes: chance 0.1)."""
    train = DigitsDataset(train=True, image_size=8, test_fraction=0.5)
    test = DigitsDataset(train=False, image_size=8, test_fraction=0.5)
    return subset(train, list(range(400))), subset(test, list(range(300)))


@pytest.mark.parametrize("protocol", [linear_augmented, finetune])
def test_scores_beat_chance_repeat_for_a_seed_and_leave_the_backbone_alone(digits, protocol):
    train, test = digits
    assert needs_images(protocol)
    transform = EvalTransform(3, (8, 8))
    kwargs = {"transform": transform, "num_classes": 10, "config": CONFIG, "device": torch.device("cpu")}
    tops = []
    for seed in (0, 1):
        backbone = tiny_backbone(seed).train()
        before = {k: v.clone() for k, v in backbone.state_dict().items()}
        scores = protocol(backbone, train, test, seed=seed, **kwargs)
        assert set(scores) == {"top1", "top5"} and 0.0 <= scores["top1"] <= scores["top5"] <= 1.0
        assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())  # BN statistics too
        assert backbone.training and all(p.requires_grad for p in backbone.parameters())
        tops.append(scores["top1"])
        if seed == 0:
            assert protocol(backbone, train, test, seed=0, **kwargs) == scores
    assert min(tops) > CHANCE_MARGIN, tops  # chance: 0.1


def test_layer_decay_groups_cover_every_parameter_once_with_decaying_lrs():
    import timm

    from contrastive.evaluation.image_protocols import finetune_groups

    model = timm.create_model("test_resnet", num_classes=0)
    groups = finetune_groups(model, 0.1, 1e-4, 0.5)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    lrs = sorted({g["lr"] for g in groups})
    assert lrs[-1] == pytest.approx(0.1) and lrs[0] < 0.1 and len(lrs) > 2
    assert finetune_groups(model, 0.1, 1e-4, None)[0]["lr"] == 0.1
    with pytest.raises(ValueError, match="finetune_layer_decay needs a timm backbone with layer groups"):
        finetune_groups(tiny_backbone(0), 0.1, 0.0, 0.5)
