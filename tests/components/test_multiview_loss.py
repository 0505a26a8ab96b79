"""The multi-view NT-Xent / SupCon loss ``NTXentLoss.multiview(z, ids)``, proved here.

* Two views with ``ids = arange(B).repeat(2)`` is ``NTXentLoss.forward`` (loss and gradients).
* SimCLR with 4 views, SupCon with random labels and ids where some anchors have no positive
  agree with a naive per-anchor float64 reference of Khosla et al. 2020, L^sup_out.
* Tiled equals plain; float32 under bf16 autocast; finite at τ = 1e-3; works without grad.
* 2 gloo CPU processes: the mean of the rank losses and the gradients of (loss / world) equal
  one process on the global batch, also when the ranks hold different numbers of valid anchors.
"""

from __future__ import annotations

import pytest
import torch

from contrastive.components import losses
from contrastive.components.losses import NTXentLoss, multiview_ntxent
from tests.helpers import run_gloo

CLOSE = {"rtol": 0, "atol": 1e-6}


def naive_multiview(z: torch.Tensor, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over anchors with a positive of logsumexp_{a≠i} s_ia/τ − mean_{p∈P(i)} s_ip/τ."""
    z = z.double()
    total, anchors = z.new_zeros(()), 0
    for i in range(z.shape[0]):
        others = [a for a in range(z.shape[0]) if a != i]
        positives = [p for p in others if ids[p] == ids[i]]
        if not positives:
            continue
        sim = {a: torch.dot(z[i], z[a]) / (z[i].norm() * z[a].norm()) / temperature for a in others}
        log_denominator = torch.logsumexp(torch.stack([sim[a] for a in others]), dim=0)
        total = total + log_denominator - sum(sim[p] for p in positives) / len(positives)
        anchors += 1
    return total / anchors


def _loss_and_grad(fn, base: torch.Tensor, *args) -> tuple[torch.Tensor, torch.Tensor]:
    z = base.clone().requires_grad_()
    loss = fn(z, *args)
    loss.backward()
    return loss.detach(), z.grad


def _random(rows: int, dim: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# -- single process ---------------------------------------------------------------------------
@pytest.mark.parametrize("tile", [0, 3])
@pytest.mark.parametrize("temperature", [0.05, 0.5, 1.0])
def test_two_views_are_forward(tile, temperature):
    batch = 7
    base_a, base_b = _random(batch, seed=1), _random(batch, seed=2)
    z_a, z_b = base_a.clone().requires_grad_(), base_b.clone().requires_grad_()
    expected = NTXentLoss(temperature, tile_size=tile)(z_a, z_b)
    expected.backward()
    loss, grad = _loss_and_grad(
        NTXentLoss(temperature, tile_size=tile).multiview, torch.cat([base_a, base_b]), torch.arange(batch).repeat(2)
    )
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, expected.detach(), **CLOSE)
    torch.testing.assert_close(grad, torch.cat([z_a.grad, z_b.grad]), **CLOSE)


def _ids(kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    if kind == "simclr_4_views":
        return torch.arange(5).repeat(4)
    if kind == "supcon":  # 8 samples, 3 classes (some class may hold a single sample), 2 views
        return torch.randint(0, 3, (8,), generator=g).repeat(2)
    # rows 1, 4 and 6 have no positive: left out as anchors, still negatives of the others
    return torch.tensor([0, 7, 0, 2, 9, 2, 5, 2])


@pytest.mark.parametrize("kind", ["simclr_4_views", "supcon", "some_without_positive"])
@pytest.mark.parametrize("tile", [0, 3])
def test_matches_naive_reference(kind, tile):
    ids = _ids(kind)
    base = _random(ids.shape[0], seed=4)
    loss, grad = _loss_and_grad(NTXentLoss(0.3, tile_size=tile).multiview, base, ids)
    expected, expected_grad = _loss_and_grad(naive_multiview, base, ids, 0.3)
    torch.testing.assert_close(loss, expected, **CLOSE)
    torch.testing.assert_close(grad, expected_grad, **CLOSE)
    if kind == "some_without_positive":
        assert grad[[1, 4, 6]].abs().amin() > 0  # negatives of the valid anchors


@pytest.mark.parametrize("tile", [0, 2])
def test_no_positive_anywhere_gives_a_zero_with_a_gradient_path(tile):
    loss, grad = _loss_and_grad(NTXentLoss(0.3, tile_size=tile).multiview, _random(6), torch.arange(6))
    assert loss.item() == 0.0
    assert torch.equal(grad, torch.zeros(6, 5, dtype=torch.float64))
    assert multiview_ntxent(_random(1), torch.zeros(1, dtype=torch.long), 0.3).item() == 0.0  # a single row


@pytest.mark.parametrize("block", [1, 4, 7, 50])
def test_tiled_equals_plain_in_float64(block):
    ids = torch.tensor([0, 1, 2, 3, 4, 5, 6]).repeat(3)[:19]  # 19 rows: blocks don't divide them
    base = _random(ids.shape[0], dim=9, seed=5)
    plain = _loss_and_grad(NTXentLoss(0.1, tile_size=0).multiview, base, ids)
    tiled = _loss_and_grad(NTXentLoss(0.1, tile_size=block).multiview, base, ids)
    for got, want in zip(tiled, plain, strict=True):
        torch.testing.assert_close(got, want, **CLOSE)


def test_float32_under_autocast_without_grad_and_at_low_temperature():
    z, ids = torch.randn(12, 8), torch.arange(4).repeat(3)
    for tile in (0, 5):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = NTXentLoss(0.5, tile_size=tile).multiview(z.bfloat16().requires_grad_(), ids)
        assert loss.dtype == torch.float32
        with torch.no_grad():
            no_grad = NTXentLoss(0.5, tile_size=tile).multiview(z, ids)
        assert not no_grad.requires_grad
        torch.testing.assert_close(no_grad, NTXentLoss(0.5, tile_size=0).multiview(z, ids))
        huge = z * 100
        tiny = NTXentLoss(1e-3, tile_size=tile).multiview(torch.cat([huge, huge]), ids.repeat(2))
        assert torch.isfinite(tiny)


def test_tiles_by_the_rule_of_block_rows(monkeypatch):
    for tile_size, rows, columns in [(None, 2048, 2048), (None, 8192, 8192), (0, 10**6, 10**6), (64, 4, 4)]:
        assert losses._block_rows(tile_size, rows, columns) == NTXentLoss(tile_size=tile_size).block_rows(rows, columns)
    calls = []
    real = losses._TiledLogSumExp.apply
    monkeypatch.setattr(losses._TiledLogSumExp, "apply", lambda *a: calls.append(a[4]) or real(*a))
    monkeypatch.setattr(losses, "AUTO_TILE_ENTRIES", 100)
    monkeypatch.setattr(losses, "BLOCK_ENTRIES", 60)
    NTXentLoss().multiview(torch.randn(16, 4), torch.arange(8).repeat(2))  # 16 × 16 > 100: 60 // 16 rows
    assert calls == [3]


@pytest.mark.parametrize(
    ("z", "ids", "message"),
    [
        (torch.randn(6), torch.arange(6), r"z of shape \(N, D\), got \(6,\)"),
        (torch.randn(2, 3, 4), torch.arange(2), r"z of shape \(N, D\), got \(2, 3, 4\)"),
        (torch.randn(6, 4), torch.arange(6).reshape(2, 3), r"ids of shape \(N,\) = \(6,\), got \(2, 3\)"),
        (torch.randn(6, 4), torch.arange(5), r"ids of shape \(N,\) = \(6,\), got \(5,\)"),
        (torch.randn(6, 4), torch.zeros(6), "integer ids, got torch.float32"),
    ],
)
def test_bad_shapes(z, ids, message):
    with pytest.raises(ValueError, match=message):
        NTXentLoss(temperature=0.5).multiview(z, ids)


# -- 2 processes ------------------------------------------------------------------------------
WORLD = 2
TILES = (0, 5)


def _cases() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Global batches of 12 rows, split 6 + 6 over the ranks."""
    labels = torch.randint(0, 3, (6,), generator=torch.Generator().manual_seed(6))
    ids = {
        "simclr_3_views": torch.arange(4).repeat(3),  # rank 0 holds views 0, 1 and half of view 2
        "supcon": labels.repeat(2),  # classes on both ranks
        # rank 0: only its first 3 rows have positives (on rank 1); rank 1: all 6
        "unequal_valid": torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2, 6, 6, 6]),
        "no_positive": torch.arange(12),
    }
    return {name: (_random(12, seed=7 + k), v) for k, (name, v) in enumerate(ids.items())}


def _one_rank(rank: int, world: int, cases) -> dict:
    out: dict[object, object] = {}
    n = 12 // WORLD
    for name, (z, ids) in cases.items():
        for tile in TILES:
            mine = z[rank * n : (rank + 1) * n].clone().requires_grad_()
            loss = NTXentLoss(0.3, tile_size=tile).multiview(mine, ids[rank * n : (rank + 1) * n])
            (loss / WORLD).backward()  # DDP's average over ranks
            out[name, tile] = (loss.detach(), mine.grad)
    rows = 2 if rank == 0 else 3  # unequal batches: a clear error on every rank, no hang
    try:
        NTXentLoss(0.3).multiview(torch.randn(rows, 4), torch.arange(rows))
    except ValueError as exc:
        out["unequal"] = str(exc)
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    cases = _cases()
    return cases, run_gloo(_one_rank, cases, worlds=(WORLD,), tmp_path=tmp_path_factory.mktemp("gloo_multiview"))[WORLD]


@pytest.mark.parametrize("name", ["simclr_3_views", "supcon", "unequal_valid", "no_positive"])
@pytest.mark.parametrize("tile", TILES)
def test_two_processes_match_one_process_on_the_global_batch(name, tile, two_processes):
    cases, results = two_processes
    z, ids = cases[name]
    expected, expected_grad = _loss_and_grad(NTXentLoss(0.3, tile_size=0).multiview, z, ids)
    mean_loss = torch.stack([r[name, tile][0] for r in results]).mean()
    torch.testing.assert_close(mean_loss, expected, **CLOSE)
    torch.testing.assert_close(torch.cat([r[name, tile][1] for r in results]), expected_grad, **CLOSE)
    if name == "unequal_valid":  # the ranks really differ: 3 and 6 valid anchors
        assert not torch.allclose(results[0][name, tile][0], results[1][name, tile][0])


def test_two_processes_reject_unequal_batches(two_processes):
    _, results = two_processes
    assert all("same batch on every process" in r["unequal"] and "[2, 3]" in r["unequal"] for r in results)
