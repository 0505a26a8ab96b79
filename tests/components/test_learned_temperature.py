"""A learned temperature for ``ntxent`` (and so SimCLR and SupCon): ``temperature: learned``.

* The loss and the gradients of z and of τ's parameter equal a naive per-anchor float64
  reference with τ = exp(log τ) through plain autograd, for the pair form and the multi-view
  (SupCon) form, untiled and tiled (`_TiledLogSumExp` returns d/d(1/τ) itself).
* The value stays within its bounds (clamped in the forward pass and in place), reads as a float,
  refuses to be set (it cannot also follow a schedule), and is a 0-dim parameter of the method:
  trainable, in the optimisers' no-decay group, at ``lr_scale`` × its group's lr.
* 2 and 4 gloo processes: the losses and the gradients of z and τ averaged over ranks (what DDP
  applies) equal one process on the global batch, float64, atol 1e-6; so do the gradients of a
  DDP-wrapped module holding the loss (as SimCLR holds it), τ's included, plain, tiled and with
  GradCache accumulation over 2 chunks (τ is used by the loss alone, not by the forward pass).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import contrastive
from contrastive.components.learned import LearnedScalar
from contrastive.components.losses import NTXentLoss
from contrastive.errors import InvalidArgumentsError
from contrastive.methods.supcon import SupCon
from contrastive.training.lr_groups import split_param_groups
from contrastive.training.scheduled import with_learned_options
from contrastive.training.step import grad_cache_step
from tests.helpers import Pool, run_gloo

CLOSE = {"rtol": 0, "atol": 1e-6}
SPEC = {"learned": True, "init": 0.3, "min": 0.05, "max": 2.0}


def naive(z: torch.Tensor, ids: torch.Tensor, log_tau: torch.Tensor) -> torch.Tensor:
    """Mean over anchors with a positive of logsumexp_{a≠i} s_ia/τ − mean_{p∈P(i)} s_ip/τ, τ = exp(log τ)."""
    tau = log_tau.exp()
    total, anchors = z.new_zeros(()), 0
    for i in range(z.shape[0]):
        others = [a for a in range(z.shape[0]) if a != i]
        positives = [p for p in others if ids[p] == ids[i]]
        if not positives:
            continue
        sims = torch.stack([torch.dot(z[i], z[a]) / (z[i].norm() * z[a].norm()) for a in others]) / tau
        positive = torch.stack([torch.dot(z[i], z[p]) / (z[i].norm() * z[p].norm()) for p in positives]).mean() / tau
        total = total + torch.logsumexp(sims, dim=0) - positive
        anchors += 1
    return total / anchors


def _random(rows: int, seed: int, dim: int = 5) -> torch.Tensor:
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _ours(form: str, tile: int, z: torch.Tensor, ids: torch.Tensor):
    """Loss, d/dz and d/d(log τ) of the learned ntxent, float64."""
    loss_fn = NTXentLoss(SPEC, tile_size=tile).double()
    z = z.clone().requires_grad_()
    if form == "pair":
        half = z.shape[0] // 2
        loss = loss_fn(z[:half], z[half:])
    else:
        loss = loss_fn.multiview(z, ids)
    loss.backward()
    return loss.detach(), z.grad, loss_fn.learned_temperature.log_value.grad


ROWS = 16  # 8 samples × 2 views: split evenly over 2 and 4 processes
FORMS = {"pair": torch.arange(8).repeat(2), "supcon": torch.tensor([0, 1, 0, 2, 1, 2, 2, 0, 1, 1, 0, 2, 3, 0, 1, 2])}


@pytest.mark.parametrize("tile", [0, 4])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_loss_and_gradients_of_z_and_tau_match_autograd_reference(form, tile):
    z, ids = _random(ROWS, seed=1), FORMS[form]
    loss, grad_z, grad_log_tau = _ours(form, tile, z, ids)
    log_tau = torch.tensor(math.log(0.3), dtype=torch.float64, requires_grad=True)
    reference_z = z.clone().requires_grad_()
    expected = naive(reference_z, ids, log_tau)
    expected.backward()
    torch.testing.assert_close(loss, expected.detach(), **CLOSE)
    torch.testing.assert_close(grad_z, reference_z.grad, **CLOSE)
    torch.testing.assert_close(grad_log_tau, log_tau.grad, **CLOSE)
    assert abs(float(log_tau.grad)) > 1e-3  # τ really gets a gradient


def test_only_tau_requiring_grad_still_gives_its_gradient_on_the_tiled_path():
    z, ids = _random(ROWS, seed=2), FORMS["supcon"]
    loss_fn = NTXentLoss(SPEC, tile_size=4).double()
    loss_fn.multiview(z, ids).backward()  # z needs no gradient
    reference = NTXentLoss(SPEC, tile_size=0).double()
    reference.multiview(z, ids).backward()
    torch.testing.assert_close(loss_fn.learned_temperature.log_value.grad, reference.learned_temperature.log_value.grad,
                               **CLOSE)


def test_bounds_value_and_no_setting():
    loss_fn = NTXentLoss({"learned": True, "init": 0.2, "min": 0.1, "max": 0.5})
    assert loss_fn.temperature == pytest.approx(0.2) and isinstance(loss_fn.temperature, float)
    scalar = loss_fn.learned_temperature
    with torch.no_grad():
        scalar.log_value.fill_(math.log(3.0))
    assert loss_fn.temperature == pytest.approx(0.5)  # clamped in the forward pass
    scalar.clamp_()
    assert float(scalar.log_value.detach()) == pytest.approx(math.log(0.5))  # and in place
    loss_fn(torch.randn(4, 3), torch.randn(4, 3)).backward()
    assert float(scalar.log_value.grad) != 0  # at the bound it still has a gradient, to move back inside
    with pytest.raises(InvalidArgumentsError, match="ntxent: the temperature is learned; it cannot also be set"):
        loss_fn.temperature = 0.3
    with pytest.raises(InvalidArgumentsError, match=r"ntxent: temperature: needs min <= init <= max"):
        NTXentLoss({"learned": True, "init": 5.0})
    assert NTXentLoss("learned").temperature == pytest.approx(0.1)
    assert NTXentLoss(0.3).learned_temperature is None and "learned" not in dict(NTXentLoss(0.3).named_parameters())


@pytest.mark.parametrize("optimizer", ["lars", "sgd", "adamw"])
def test_supcon_trains_it_without_weight_decay_at_its_lr_scale(optimizer):
    registries = contrastive.load_registries(autoload=False)
    backbone = Pool()
    head = registries.heads.build("mlp", in_dim=backbone.num_features, hidden_dim=8, out_dim=4)
    loss = registries.losses.build("ntxent", temperature={"learned": True, "lr_scale": 0.1})
    method = SupCon(backbone, head, loss)
    named = list(method.trainable_parameters())
    assert "criterion.learned_temperature.log_value" in dict(named)
    built = registries.optimizers.build(optimizer, named_parameters=named, batch_size=256, lr=0.5, weight_decay=0.1)
    split_param_groups(built, named, with_learned_options(method, method.param_group_options))
    (group,) = [g for g in built.param_groups if any(p is loss.learned_temperature.log_value for p in g["params"])]
    assert group["params"] == [loss.learned_temperature.log_value]
    assert group["weight_decay"] == 0 and group["name"] == "no_decay+lr_scale=0.1"
    (no_decay,) = [g for g in built.param_groups if g["name"] == "no_decay"]
    assert group["lr"] == pytest.approx(0.1 * no_decay["lr"])
    assert isinstance(loss.learned_temperature, LearnedScalar)


class Embedder(nn.Module):
    """A method-like module: a small network, and the learned ntxent as a submodule (SimCLR's ``criterion``)."""

    def __init__(self, tile: int) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Linear(4, 7), nn.Tanh(), nn.Linear(7, 5))
        self.criterion = NTXentLoss(SPEC, tile_size=tile)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def module_step(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, chunks: int, **ddp) -> list[torch.Tensor]:
    """One GradCache step of a two-view method over ``chunks`` chunks: the gradients of the module's parameters."""
    module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    size = x_a.shape[0] // chunks

    def embed(k: int) -> dict[str, torch.Tensor]:
        z = model(torch.cat([x_a[k * size : (k + 1) * size], x_b[k * size : (k + 1) * size]]))
        return {"z": z.reshape(2, size, -1).transpose(0, 1)}

    def loss_of(outputs: dict[str, torch.Tensor]):
        return module.criterion(outputs["z"][:, 0].contiguous(), outputs["z"][:, 1].contiguous()), {}

    grad_cache_step(embed, loss_of, chunks, parameters=list(module.parameters()), **ddp)
    return [p.grad.detach().clone() for p in module.parameters()]


def _inputs(samples: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    return torch.randn(samples, 4, generator=g, dtype=torch.float64), torch.randn(samples, 4, generator=g, dtype=torch.float64)


def test_grad_cache_accumulation_gives_tau_its_gradient():
    x_a, x_b = _inputs()
    one = module_step(Embedder(0).double(), x_a, x_b, 1)
    for tile in (0, 2):
        two = module_step(Embedder(tile).double(), x_a, x_b, 2)
        for got, want in zip(two, one, strict=True):
            torch.testing.assert_close(got, want, **CLOSE)
    assert abs(float(one[-1])) > 1e-3  # the last parameter is log τ's, and it moved


# -- 2 and 4 processes ------------------------------------------------------------------------
WORLDS = (2, 4)
TILES = (0, 2)


def _one_rank(rank: int, world: int, z: torch.Tensor) -> dict:
    out = {}
    n = z.shape[0] // world
    for form, ids in FORMS.items():
        for tile in TILES:
            loss_fn = NTXentLoss(SPEC, tile_size=tile).double()
            if form == "pair":  # rows i and i + 8 are the two views of sample i; a rank holds n / 2 samples
                half = n // 2
                z_a = z[rank * half : (rank + 1) * half].clone().requires_grad_()
                z_b = z[ROWS // 2 + rank * half : ROWS // 2 + (rank + 1) * half].clone().requires_grad_()
                loss = loss_fn(z_a, z_b)
                (loss / world).backward()  # DDP's average over ranks
                grads = (z_a.grad, z_b.grad)
            else:
                mine = z[rank * n : (rank + 1) * n].clone().requires_grad_()
                loss = loss_fn.multiview(mine, ids[rank * n : (rank + 1) * n])
                (loss / world).backward()
                grads = (mine.grad,)
            tau_grad = loss_fn.learned_temperature.log_value.grad.clone()
            mean_loss = loss.detach().clone()
            torch.distributed.all_reduce(tau_grad)  # DDP sums the (loss / world) gradients
            torch.distributed.all_reduce(mean_loss)
            out[form, tile] = (mean_loss / world, grads, tau_grad)
    x_a, x_b = _inputs()
    samples = x_a.shape[0] // world
    mine = slice(rank * samples, (rank + 1) * samples)
    for tile, chunks in ((0, 1), (2, 1), (0, 2)):  # DDP averages the gradients, τ's with the others
        ddp = nn.parallel.DistributedDataParallel(Embedder(tile).double())
        out["ddp", tile, chunks] = module_step(ddp, x_a[mine], x_b[mine], chunks, no_sync=ddp.no_sync)
    return out


@pytest.fixture(scope="module")
def distributed(tmp_path_factory):
    z = _random(ROWS, seed=3)
    return z, run_gloo(_one_rank, z, worlds=WORLDS, tmp_path=tmp_path_factory.mktemp("gloo_learned_tau"))


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("form", sorted(FORMS))
def test_processes_match_one_process_on_the_global_batch(form, tile, world, distributed):
    z, results = distributed
    expected_loss, expected_z, expected_tau = _ours(form, 0, z, FORMS[form])
    ranks = results[world]
    for rank in ranks:
        torch.testing.assert_close(rank[form, tile][0], expected_loss, **CLOSE)
        torch.testing.assert_close(rank[form, tile][2], expected_tau, **CLOSE)
    if form == "pair":
        got = torch.cat([torch.cat([r[form, tile][1][0] for r in ranks]), torch.cat([r[form, tile][1][1] for r in ranks])])
    else:
        got = torch.cat([r[form, tile][1][0] for r in ranks])
    torch.testing.assert_close(got, expected_z, **CLOSE)


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize(("tile", "chunks"), [(0, 1), (2, 1), (0, 2)])
def test_ddp_module_gradients_tau_included_match_one_process(tile, chunks, world, distributed):
    x_a, x_b = _inputs()
    expected = module_step(Embedder(0).double(), x_a, x_b, 1)
    for rank in distributed[1][world]:
        for got, want in zip(rank["ddp", tile, chunks], expected, strict=True):
            torch.testing.assert_close(got, want, **CLOSE)
