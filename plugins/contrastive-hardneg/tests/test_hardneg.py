"""Tests of the contrastive-hardneg plugin; they need only contrastive installed, not the plugin."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from contrastive.components.losses import NTXentLoss
from contrastive.errors import InvalidArgumentsError
from contrastive.registry import Registries

from contrastive_hardneg import GaussianNoise, HardNegativeLoss, plugin


def naive_hard_negative(z_a, z_b, temperature, beta, tau_plus):
    """The paper's formula, one anchor at a time, in float64 and linear space."""
    views = F.normalize(torch.cat([z_a, z_b]).double(), dim=1)
    n = z_a.shape[0]
    losses = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        pos = math.exp(float(views[i] @ views[j]) / temperature)
        sims = [float(views[i] @ views[k]) for k in range(2 * n) if k not in (i, j)]
        m = len(sims)
        neg = [math.exp(s / temperature) for s in sims]
        raw = [math.exp(beta * s / temperature) for s in sims]
        weights = [r / (sum(raw) / m) for r in raw]
        ng = (-tau_plus * m * pos + sum(w * e for w, e in zip(weights, neg, strict=True))) / (1 - tau_plus)
        ng = max(ng, m * math.exp(-1 / temperature))
        losses.append(-math.log(pos / (pos + ng)))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_without_hardness_or_debiasing_equals_ntxent(temperature):
    torch.manual_seed(0)
    z_a, z_b = torch.randn(16, 32), torch.randn(16, 32)
    ours = HardNegativeLoss(temperature=temperature, beta=0.0, tau_plus=0.0)(z_a, z_b)
    reference = NTXentLoss(temperature=temperature)(z_a, z_b)
    assert abs(ours.item() - reference.item()) < 1e-6


@pytest.mark.parametrize(
    ("temperature", "beta", "tau_plus"), [(0.5, 1.0, 0.1), (0.2, 0.5, 0.0), (0.5, 0.0, 0.1), (0.1, 2.0, 0.05)]
)
def test_matches_naive_per_anchor_implementation(temperature, beta, tau_plus):
    torch.manual_seed(1)
    z_a = torch.randn(8, 16)
    z_b = z_a + 0.5 * torch.randn(8, 16)  # correlated views, as in training
    ours = HardNegativeLoss(temperature=temperature, beta=beta, tau_plus=tau_plus)(z_a, z_b)
    assert ours.dtype == torch.float32 and ours.ndim == 0
    assert ours.item() == pytest.approx(naive_hard_negative(z_a, z_b, temperature, beta, tau_plus), rel=1e-5, abs=1e-6)


def test_beta_given_per_call_overrides_the_constructor():
    torch.manual_seed(5)
    z_a, z_b = torch.randn(8, 16), torch.randn(8, 16)
    scheduled = HardNegativeLoss(temperature=0.5, beta=1.0, tau_plus=0.1)
    for beta in (0.0, 0.3, 2.0):
        fixed = HardNegativeLoss(temperature=0.5, beta=beta, tau_plus=0.1)(z_a, z_b)
        assert torch.equal(scheduled(z_a, z_b, beta=beta), fixed)
    assert torch.equal(scheduled(z_a, z_b), scheduled(z_a, z_b, beta=1.0))
    with pytest.raises(ValueError, match="beta must be >= 0"):
        scheduled(z_a, z_b, beta=-0.5)


def test_floor_applies_when_debiasing_removes_every_negative():
    z = torch.randn(4, 8)  # identical views: pos is as large as possible, tau_plus·M·pos beats the negatives
    loss = HardNegativeLoss(temperature=0.5, beta=1.0, tau_plus=0.9)
    assert loss(z, z).item() == pytest.approx(naive_hard_negative(z, z, 0.5, 1.0, 0.9), rel=1e-5)


def test_gradients_are_finite_at_extreme_settings():
    torch.manual_seed(2)
    z_a = torch.randn(32, 64, requires_grad=True)
    z_b = torch.randn(32, 64, requires_grad=True)
    loss = HardNegativeLoss(temperature=0.01, beta=10.0, tau_plus=0.5)(z_a, z_b)  # exp(1/t) alone overflows fp32
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(z_a.grad).all() and torch.isfinite(z_b.grad).all()


def test_float32_under_autocast():
    z_a, z_b = torch.randn(8, 16), torch.randn(8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = HardNegativeLoss()(z_a.bfloat16(), z_b.bfloat16())
    assert loss.dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs", [{"temperature": 0.0}, {"beta": -1.0}, {"tau_plus": 1.0}, {"tau_plus": -0.1}], ids=str
)
def test_invalid_arguments(kwargs):
    with pytest.raises(InvalidArgumentsError, match="hard_negative"):
        HardNegativeLoss(**kwargs)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        HardNegativeLoss()(torch.randn(4, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match="at least 2 samples"):
        HardNegativeLoss()(torch.randn(1, 8), torch.randn(1, 8))


def test_gaussian_noise_contract():
    torch.manual_seed(3)
    images = torch.rand(64, 3, 8, 8)
    out = GaussianNoise(std=0.1, p=0.5)(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1
    changed = (out != images).flatten(1).any(dim=1)
    assert 0 < changed.sum() < 64  # an independent coin per image
    noise = (out - images)[changed]
    assert not torch.equal(noise[0], noise[1])  # and independent noise per image
    assert torch.equal(GaussianNoise(std=0.1, p=0.0)(images), images)


def test_gaussian_noise_invalid_arguments():
    with pytest.raises(InvalidArgumentsError):
        GaussianNoise(std=-1.0)
    with pytest.raises(InvalidArgumentsError):
        GaussianNoise(p=1.5)


def test_hook_registers_both_parts():
    registries = Registries()
    plugin.contrastive_register(registries=registries)
    assert isinstance(registries.losses.build("hard_negative", beta=0.5), HardNegativeLoss)
    assert isinstance(registries.augmentations.build("gaussian_noise", std=0.1), GaussianNoise)
    with pytest.raises(InvalidArgumentsError, match="did you mean 'tau_plus'"):
        registries.losses.build("hard_negative", tau_plu=0.1)


# -- correct across processes: two gloo processes on half batches == one process on the batch --
def _distributed_worker(rank, world_size, tmp_path, z_a, z_b):
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'init'}", rank=rank, world_size=world_size
    )
    try:
        n = z_a.shape[0] // world_size
        part_a = z_a[rank * n : (rank + 1) * n].clone().requires_grad_()
        part_b = z_b[rank * n : (rank + 1) * n].clone().requires_grad_()
        loss = HardNegativeLoss(temperature=0.2, beta=1.0, tau_plus=0.1)(part_a, part_b)
        (loss / world_size).backward()  # DDP averages gradients over ranks the same way
        torch.save((loss.detach(), part_a.grad, part_b.grad), tmp_path / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_distributed_matches_single_process(tmp_path):
    torch.manual_seed(4)
    z_a, z_b = torch.randn(8, 16), torch.randn(8, 16)
    full_a, full_b = z_a.clone().requires_grad_(), z_b.clone().requires_grad_()
    expected = HardNegativeLoss(temperature=0.2, beta=1.0, tau_plus=0.1)(full_a, full_b)
    expected.backward()

    torch.multiprocessing.start_processes(
        _distributed_worker, args=(2, tmp_path, z_a, z_b), nprocs=2, start_method="spawn"
    )
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    assert torch.stack([r[0] for r in results]).mean().item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(torch.cat([r[1] for r in results]), full_a.grad)
    torch.testing.assert_close(torch.cat([r[2] for r in results]), full_b.grad)
