"""The image protocols on 2 and 4 gloo processes train what one process trains on the global batch.

Each process augments the whole global batch (the same draws) and runs the backbone on its slice:
``linear_augmented`` gathers the features, ``finetune`` sums the gradients.  With a backbone without
BatchNorm (whose batch statistics are per slice by design) the head, the fine-tuned backbone and the
scores equal one process's up to float rounding (a matrix product of a slice may round differently
from the whole batch's), and every process ends with the same weights.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contrastive.components.datasets.arrays import DigitsDataset
from contrastive.evaluation.features import EvalTransform
from contrastive.evaluation.holdout import subset
from contrastive.evaluation.image_protocols import new_head, train_and_score
from tests.helpers import run_gloo

BATCH, EPOCHS, LR = 40, 2, 0.1  # 120 train images: 3 steps per epoch, slices of 20 / 10 images


def data():
    train = DigitsDataset(train=True, image_size=8, test_fraction=0.5)
    test = DigitsDataset(train=False, image_size=8, test_fraction=0.5)
    return subset(train, list(range(120))), subset(test, list(range(100)))


def backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(192, 32), nn.ReLU())


def train(frozen: bool, group) -> dict:
    """One protocol's training on this process: its scores and the trained weights."""
    train_set, test_set = data()
    transform = EvalTransform(3, (8, 8))
    model = backbone()
    if frozen:
        model.requires_grad_(False)
    head = new_head(model, transform, train_set[0][0], 10, torch.device("cpu"))
    groups = [{"params": list(head.parameters()), "lr": LR, "weight_decay": 1e-4}]
    if not frozen:
        groups.insert(0, {"params": list(model.parameters()), "lr": LR, "weight_decay": 1e-4})
    scores = train_and_score(model, head, train_set, test_set, transform=transform, groups=groups, epochs=EPOCHS,
                             batch_size=BATCH, seed=0, device=torch.device("cpu"), precision="no", frozen=frozen,
                             group=group)
    weights = {f"head.{k}": v.clone() for k, v in head.state_dict().items()}
    weights.update({f"model.{k}": v.clone() for k, v in model.state_dict().items()})
    return {"scores": scores, "weights": weights}


def on_every_rank(rank: int, world: int) -> dict:
    return {frozen: train(frozen, torch.distributed.group.WORLD) for frozen in (True, False)}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_gloo(on_every_rank, worlds=(2, 4), tmp_path=tmp_path_factory.mktemp("imggloo"))


@pytest.mark.parametrize("frozen", [True, False], ids=["linear_augmented", "finetune"])
@pytest.mark.parametrize("world", [2, 4])
def test_processes_train_what_one_process_trains(results, frozen, world):
    torch.set_num_threads(1)
    one = train(frozen, None)
    start = backbone().state_dict()
    for rank, result in enumerate(results[world]):
        got = result[frozen]
        assert got["scores"] == one["scores"], (rank, got["scores"], one["scores"])
        for name, want in one["weights"].items():
            torch.testing.assert_close(got["weights"][name], want, rtol=0, atol=1e-5, msg=f"{name} on rank {rank}")
        same = torch.equal(got["weights"]["model.1.weight"], start["1.weight"])
        assert same == frozen  # linear_augmented leaves the backbone; finetune moves it
        first = results[world][0][frozen]["weights"]
        assert all(torch.equal(v, first[k]) for k, v in got["weights"].items())  # every process: one model
