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
