"""The decoupled contrastive losses ``dcl`` and ``dclw`` (Yeh et al. 2022, arXiv:2110.06848), proved here.

* Both agree with a naive per-anchor float64 reference of the paper's formulas (loss and gradients).
* DCL is NT-Xent minus each anchor's −log(1 − p⁺) (p⁺ the positive's share of NT-Xent's softmax).
* DCLW with equal positive similarities has unit weights: it is DCL.
* float32 under bf16 autocast, float64 kept; finite at τ = 1e-3; argument and shape validation.
* Registered through the hook into a fresh ``Registries``, and as built-ins.
* 2 gloo CPU processes: the mean of the rank losses and the gradients of (loss / world) equal
  one process on the global batch, for both losses.
* A 2-step ``fit`` with ``loss: {name: dcl}`` ends with a finite loss.
"""

from __future__ import annotations

import math

import pytest
import torch

import contrastive
from contrastive import recipe as recipes
from contrastive.components import dcl
from contrastive.components.dcl import DCLLoss, DCLWLoss
from contrastive.components.losses import NTXentLoss, positive_pair_logits
from contrastive.errors import InvalidArgumentsError
from contrastive.registry import Registries
from contrastive.training import fit
from tests.helpers import run_gloo, tiny_recipe_dict

CLOSE = {"rtol": 0, "atol": 1e-6}


def naive_dcl(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float, sigma: float | None = None) -> torch.Tensor:
    """Mean over the 2N anchors of −w_i s(i, i⁺)/τ + log Σ_{k ∉ {i, i⁺}} exp(s(i, k)/τ); w_i = 1 for DCL,
    else 2 − 2N exp(s(i, i⁺)/σ) / Σ_j exp(s(j, j⁺)/σ) (constant: detached)."""
    z = torch.cat([z_a, z_b]).double()
    n = z_a.shape[0]

    def sim(i, k):
        return torch.dot(z[i], z[k]) / (z[i].norm() * z[k].norm())

    def positive(i):
        return i + n if i < n else i - n

    weights = [1.0] * (2 * n)
    if sigma is not None:
        exps = [torch.exp(sim(j, positive(j)).detach() / sigma) for j in range(2 * n)]
        weights = [2 - 2 * n * e / sum(exps) for e in exps]
    total = z.new_zeros(())
    for i in range(2 * n):
        negatives = [k for k in range(2 * n) if k not in (i, positive(i))]
        log_denominator = torch.log(sum(torch.exp(sim(i, k) / temperature) for k in negatives))
        total = total - weights[i] * sim(i, positive(i)) / temperature + log_denominator
    return total / (2 * n)


def _random(rows: int, dim: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _loss_and_grads(fn, base_a: torch.Tensor, base_b: torch.Tensor, *args):
    z_a, z_b = base_a.clone().requires_grad_(), base_b.clone().requires_grad_()
    loss = fn(z_a, z_b, *args)
    loss.backward()
    return loss.detach(), z_a.grad, z_b.grad


LOSSES = {"dcl": lambda t: DCLLoss(temperature=t), "dclw": lambda t: DCLWLoss(temperature=t, sigma=0.5)}


# -- single process ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dcl", "dclw"])
@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_matches_naive_reference(name, temperature):
    base_a, base_b = _random(6, seed=1), _random(6, seed=2)
    got = _loss_and_grads(LOSSES[name](temperature), base_a, base_b)
    sigma = 0.5 if name == "dclw" else None
    want = _loss_and_grads(naive_dcl, base_a, base_b, temperature, sigma)
    assert got[0].dtype == torch.float64
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **CLOSE)


@pytest.mark.parametrize("sigma", [0.2, 2.0])
def test_dclw_matches_naive_reference_for_other_sigmas(sigma):
    base_a, base_b = _random(5, seed=3), _random(5, seed=4)
    got = _loss_and_grads(DCLWLoss(0.2, sigma=sigma), base_a, base_b)
    want = _loss_and_grads(naive_dcl, base_a, base_b, 0.2, sigma)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **CLOSE)


def test_dcl_is_ntxent_without_the_positive_share():
    z_a, z_b = _random(7, seed=5), _random(7, seed=6)
    temperature = 0.3
    ntxent = NTXentLoss(temperature, tile_size=0)(z_a, z_b)
    ours = DCLLoss(temperature)(z_a, z_b)
    assert ours < ntxent  # the positive only ever enlarges NT-Xent's denominator
    # l_ntxent_i − l_dcl_i = log(1 + e^{s⁺/τ} / Σ_neg) = −log(1 − p⁺_i)
    logits, targets = positive_pair_logits(z_a, z_b, temperature)
    share = logits.softmax(dim=1)[torch.arange(logits.shape[0]), targets]
    torch.testing.assert_close(ours, ntxent + torch.log1p(-share).mean(), **CLOSE)
    for loss in (DCLLoss(temperature), DCLWLoss(temperature)):
        _, grad_a, grad_b = _loss_and_grads(loss, z_a, z_b)
        assert torch.isfinite(grad_a).all() and torch.isfinite(grad_b).all()
        assert grad_a.abs().amax() > 0


def test_dclw_with_equal_positive_similarities_is_dcl():
    base_a, noise = _random(6, seed=7), _random(6, seed=8)
    u = torch.nn.functional.normalize(base_a, dim=1)
    v = torch.nn.functional.normalize(noise - (noise * u).sum(1, keepdim=True) * u, dim=1)
    base_b = 3.0 * (0.6 * u + 0.8 * v)  # cos(z_a_i, z_b_i) = 0.6 for every i
    cosines = torch.nn.functional.cosine_similarity(base_a, base_b)
    torch.testing.assert_close(cosines, torch.full_like(cosines, 0.6), **CLOSE)
    weighted = _loss_and_grads(DCLWLoss(0.2, sigma=0.5), base_a, base_b)
    plain = _loss_and_grads(DCLLoss(0.2), base_a, base_b)
    for g, w in zip(weighted, plain, strict=True):
        torch.testing.assert_close(g, w, **CLOSE)
    # ... and differs from DCL as soon as the positives differ
    generic_a, generic_b = _random(6, seed=9), _random(6, seed=10)
    assert not torch.allclose(DCLWLoss(0.2)(generic_a, generic_b), DCLLoss(0.2)(generic_a, generic_b))


@pytest.mark.parametrize("name", ["dcl", "dclw"])
def test_float32_under_autocast_and_stable_at_low_temperature(name):
    z_a, z_b = torch.randn(8, 16).bfloat16().requires_grad_(), torch.randn(8, 16).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = LOSSES[name](0.1)(z_a, z_b)
    assert loss.dtype == torch.float32
    loss.backward()
    assert z_a.grad.dtype == torch.bfloat16 and torch.isfinite(z_a.grad.float()).all()
    huge = torch.randn(8, 16) * 100
    tiny_a, tiny_b = huge.clone().requires_grad_(), (huge + torch.randn(8, 16)).requires_grad_()
    tiny = LOSSES[name](1e-3)(tiny_a, tiny_b)
    assert math.isfinite(tiny.item())
    tiny.backward()
    assert torch.isfinite(tiny_a.grad).all() and torch.isfinite(tiny_b.grad).all()
    with torch.no_grad():
        assert not LOSSES[name](0.1)(torch.randn(4, 3), torch.randn(4, 3)).requires_grad


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: DCLLoss(temperature=0), "dcl: temperature must be > 0, got 0"),
        (lambda: DCLLoss(temperature=-0.1), "dcl: temperature must be > 0, got -0.1"),
        (lambda: DCLLoss(temperature=float("nan")), "dcl: temperature must be > 0"),
        (lambda: DCLWLoss(temperature=0.0), "dclw: temperature must be > 0, got 0.0"),
        (lambda: DCLWLoss(sigma=0), "dclw: sigma must be > 0, got 0"),
        (lambda: DCLWLoss(sigma=-1.0), "dclw: sigma must be > 0, got -1.0"),
    ],
)
def test_invalid_arguments(factory, message):
    with pytest.raises(InvalidArgumentsError, match=message):
        factory()


@pytest.mark.parametrize("loss", [DCLLoss(), DCLWLoss()], ids=["dcl", "dclw"])
def test_bad_shapes(loss):
    name = "dclw" if isinstance(loss, DCLWLoss) else "dcl"
    for z_a, z_b in [(torch.randn(4, 3), torch.randn(5, 3)), (torch.randn(4), torch.randn(4)),
                     (torch.randn(2, 3, 4), torch.randn(2, 3, 4))]:
        with pytest.raises(ValueError, match=rf"^{name} expects two \(B, D\) tensors of one shape"):
            loss(z_a, z_b)
    with pytest.raises(ValueError, match=rf"^{name} needs at least 2 samples in the global batch"):
        loss(torch.randn(1, 3), torch.randn(1, 3))


def test_registered_through_the_hook():
    registries = Registries()
    dcl.contrastive_register(registries=registries)
    assert registries.losses.names() == ["dcl", "dclw"]
    built = registries.losses.build("dcl", temperature=0.2)
    assert isinstance(built, DCLLoss) and built.temperature == 0.2
    weighted = registries.losses.build("dclw", temperature=0.3, sigma=0.7)
    assert isinstance(weighted, DCLWLoss) and (weighted.temperature, weighted.sigma) == (0.3, 0.7)
    assert registries.losses.build("dclw").sigma == 0.5 and registries.losses.build("dcl").temperature == 0.1
    with pytest.raises(InvalidArgumentsError, match="has no argument 'sigma'"):
        registries.losses.build("dcl", sigma=0.5)
    with pytest.raises(InvalidArgumentsError, match="dclw: sigma must be > 0"):
        registries.losses.build("dclw", sigma=0.0)
    builtins = contrastive.load_registries(autoload=False)
    assert {"ntxent", "dcl", "dclw"} <= set(builtins.losses.names())
    assert builtins.losses.source("dcl").startswith("contrastive")


# -- 2 processes ------------------------------------------------------------------------------
WORLD = 2
GLOBAL_BATCH = 8
TEMPERATURE = 0.3


def _one_rank(rank: int, world: int, data) -> dict:
    out = {}
    n = GLOBAL_BATCH // WORLD
    for name, factory in LOSSES.items():
        z_a = data[0][rank * n : (rank + 1) * n].clone().requires_grad_()
        z_b = data[1][rank * n : (rank + 1) * n].clone().requires_grad_()
        loss = factory(TEMPERATURE)(z_a, z_b)
        (loss / WORLD).backward()  # DDP's average over ranks
        out[name] = (loss.detach(), z_a.grad, z_b.grad)
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    data = (_random(GLOBAL_BATCH, seed=11), _random(GLOBAL_BATCH, seed=12))
    return data, run_gloo(_one_rank, data, worlds=(WORLD,), tmp_path=tmp_path_factory.mktemp("gloo_dcl"))[WORLD]


@pytest.mark.parametrize("name", ["dcl", "dclw"])
def test_two_processes_match_one_process_on_the_global_batch(name, two_processes):
    data, results = two_processes
    loss, grad_a, grad_b = _loss_and_grads(LOSSES[name](TEMPERATURE), *data)
    torch.testing.assert_close(torch.stack([r[name][0] for r in results]).mean(), loss, **CLOSE)
    torch.testing.assert_close(torch.cat([r[name][1] for r in results]), grad_a, **CLOSE)
    torch.testing.assert_close(torch.cat([r[name][2] for r in results]), grad_b, **CLOSE)
    assert not torch.allclose(results[0][name][0], results[1][name][0])  # the ranks really differ


# -- end to end -------------------------------------------------------------------------------
def test_fit_with_dcl(tmp_path):
    registries = contrastive.load_registries(autoload=False)
    raw = tiny_recipe_dict(str(tmp_path), max_steps=2, batch_size=8)
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    raw["loss"] = {"name": "dcl"}
    results = fit(recipes.validate(raw, registries), registries)
    assert results["steps"] == 2
    assert math.isfinite(results["loss"])
