"""NT-Xent against a naive per-anchor reference written from the paper's formula."""

import math

import pytest
import torch

from contrastive.components.losses import NTXentLoss
from contrastive.errors import InvalidArgumentsError


def naive_ntxent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> torch.Tensor:
    z = torch.cat([z_a, z_b]).double()
    n = z_a.shape[0]
    total = 0.0
    for i in range(2 * n):
        j = i + n if i < n else i - n
        sim = [torch.dot(z[i], z[k]) / (z[i].norm() * z[k].norm()) for k in range(2 * n)]
        numerator = torch.exp(sim[j] / temperature)
        denominator = sum(torch.exp(sim[k] / temperature) for k in range(2 * n) if k != i)
        total = total - torch.log(numerator / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_matches_naive_reference(temperature):
    torch.manual_seed(0)
    z_a, z_b = torch.randn(6, 5), torch.randn(6, 5)
    ours = NTXentLoss(temperature)(z_a, z_b)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours.double(), naive_ntxent(z_a, z_b, temperature), atol=1e-5)


def test_gradients_match_reference():
    torch.manual_seed(1)
    z_a = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    z_b = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    NTXentLoss(0.5)(z_a, z_b).backward()
    ours = (z_a.grad.clone(), z_b.grad.clone())
    z_a.grad = z_b.grad = None
    naive_ntxent(z_a, z_b, 0.5).backward()
    assert torch.allclose(ours[0].double(), z_a.grad, atol=1e-5)
    assert torch.allclose(ours[1].double(), z_b.grad, atol=1e-5)


def test_identical_views_give_low_loss_and_stable_at_low_temperature():
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(32, 64), dim=1)
    easy = NTXentLoss(0.5)(z, z)
    hard = NTXentLoss(0.5)(z, torch.randn(32, 64))
    assert easy < hard
    tiny = NTXentLoss(1e-3)(z * 100, z * 100)  # huge logits: log-sum-exp keeps it finite
    assert math.isfinite(tiny.item())


def test_fp32_under_autocast():
    z_a, z_b = torch.randn(8, 16).bfloat16(), torch.randn(8, 16).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = NTXentLoss(0.5)(z_a, z_b)
    assert loss.dtype == torch.float32


def test_bad_arguments():
    with pytest.raises(InvalidArgumentsError, match="temperature"):
        NTXentLoss(0.0)
    with pytest.raises(ValueError, match="ntxent"):
        NTXentLoss()(torch.randn(4, 3), torch.randn(5, 3))
