"""Our losses against lightly's, where lightly is installed (the benchmark environment:
``pip install -e .[bench]``); skipped elsewhere.  float64, 1e-6."""

from __future__ import annotations

import pytest
import torch

lightly_loss = pytest.importorskip("lightly.loss")

from contrastive.components.dcl import DCLLoss, DCLWLoss  # noqa: E402
from contrastive.components.losses import NTXentLoss  # noqa: E402

CLOSE = {"rtol": 0, "atol": 1e-6}


def pair(n: int = 12, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z_a = torch.randn(n, d, generator=g, dtype=torch.float64)
    return z_a, z_a + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)


def loss_and_grads(loss_fn, z_a, z_b):
    a, b = z_a.clone().requires_grad_(), z_b.clone().requires_grad_()
    value = loss_fn(a, b)
    value.backward()
    return value.detach(), a.grad, b.grad


@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize(("ours", "theirs"), [
    (lambda t: NTXentLoss(t), lambda t: lightly_loss.NTXentLoss(t)),
    (lambda t: DCLLoss(t), lambda t: lightly_loss.DCLLoss(t)),
    (lambda t: DCLWLoss(t, sigma=0.5), lambda t: lightly_loss.DCLWLoss(t, sigma=0.5)),
], ids=["ntxent", "dcl", "dclw"])
def test_losses_equal_lightly(ours, theirs, temperature):
    z_a, z_b = pair()
    for got, want in zip(loss_and_grads(ours(temperature), z_a, z_b), loss_and_grads(theirs(temperature), z_a, z_b),
                         strict=True):
        torch.testing.assert_close(got.to(torch.float64), want.to(torch.float64), **CLOSE)


def test_moco_loss_equals_lightly_ntxent_with_a_memory_bank():
    """MoCo v2's InfoNCE against a filled queue (``MoCo._info_nce``) is lightly's
    ``NTXentLoss(memory_bank_size=...)`` on (q, k) once its bank holds the same keys."""
    from types import SimpleNamespace

    from contrastive.methods.memory import FeatureQueue
    from contrastive.methods.moco import MoCo

    z_q, z_k = pair(8, 6, seed=1)
    q, k = torch.nn.functional.normalize(z_q, dim=1), torch.nn.functional.normalize(z_k, dim=1)
    bank_keys = torch.nn.functional.normalize(torch.randn(16, 6, dtype=torch.float64), dim=1)
    queue = FeatureQueue(16, 6).double()
    queue.push(bank_keys)
    ours = MoCo._info_nce(SimpleNamespace(temperature=0.2), q, k, queue.read())
    theirs = lightly_loss.NTXentLoss(temperature=0.2, memory_bank_size=(16, 6)).double()
    theirs.memory_bank.bank = bank_keys.clone()  # lightly keeps the bank as (size, dim)
    torch.testing.assert_close(ours, theirs(z_q, z_k).double(), **CLOSE)
