"""Multi-process SimCLR is the single-process computation on the global batch — proved here.

* 2 and 4 gloo CPU processes: NT-Xent (plain and tiled) averaged over ranks, the embeddings'
  gradients, DDP-averaged parameter gradients and GradCache-under-DDP gradients all equal one
  process on the full batch (float64, 1e-6).
* Tiled NT-Xent equals the plain computation (loss and gradients, float64).
* GradCache (``trainer.accumulate: K``) gives the K = 1 parameter gradients, replays dropout.
* A 2-process ``accelerate launch --cpu`` fit writes one set of outputs and resumes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from contrastive.components import losses
from contrastive.components.losses import NTXentLoss
from contrastive.errors import InvalidArgumentsError, RecipeError
from contrastive.training.step import grad_cache_step
from tests.helpers import run_gloo, run_ranks, tiny_recipe_dict

TEMPERATURE = 0.3
GLOBAL_BATCH = 8
DIM = 6


def _data(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "z_a": torch.randn(GLOBAL_BATCH, 5, generator=g, dtype=torch.float64),
        "z_b": torch.randn(GLOBAL_BATCH, 5, generator=g, dtype=torch.float64),
        "x_a": torch.randn(GLOBAL_BATCH, DIM, generator=g, dtype=torch.float64),
        "x_b": torch.randn(GLOBAL_BATCH, DIM, generator=g, dtype=torch.float64),
    }


def _linear() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(DIM, 7), nn.Tanh(), nn.Linear(7, 5)).double()


def _param_grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


def _embed_fn(model, x_a, x_b, chunks: int):
    """A method's forward for chunk k: ``{"z": (n, 2, D)}``, the two views of the chunk's n samples."""
    size = x_a.shape[0] // chunks

    def embed(k):
        z = model(torch.cat([x_a[k * size : (k + 1) * size], x_b[k * size : (k + 1) * size]]))
        return {"z": z.reshape(2, size, -1).transpose(0, 1)}

    return embed


def contrastive_step(embed, loss_fn, accumulate=1, *, no_sync=None, model=None):
    """One GradCache step of a two-view method (SimCLR's loss over z[:, 0] and z[:, 1]); the detached loss."""

    def loss_of(outputs):
        z = outputs["z"]
        return loss_fn(z[:, 0].contiguous(), z[:, 1].contiguous()), {}

    restore = list(model.buffers()) if model is not None else []
    kwargs = {"no_sync": no_sync} if no_sync is not None else {}
    return grad_cache_step(embed, loss_of, accumulate, restore=restore, **kwargs)[0]


# -- the workers: 4 spawned processes, first one gloo group of 4, then ranks 0-1 as a group of 2 (run_gloo)
def _one_rank(rank: int, world: int, data: dict[str, torch.Tensor]) -> dict[str, object]:
    n = GLOBAL_BATCH // world
    mine = {k: v[rank * n : (rank + 1) * n] for k, v in data.items()}
    out: dict[str, object] = {}
    # 1. the loss and the embeddings' gradients, plain and tiled (DDP would divide by world)
    for tile in (0, 3):
        z_a = mine["z_a"].clone().requires_grad_()
        z_b = mine["z_b"].clone().requires_grad_()
        loss = NTXentLoss(TEMPERATURE, tile_size=tile)(z_a, z_b)
        (loss / world).backward()
        out[f"loss_{tile}"] = loss.detach()
        out[f"grad_{tile}"] = (z_a.grad, z_b.grad)
    # 2. parameter gradients of a model wrapped in DDP (averaged over ranks by DDP itself),
    #    plain, tiled, and with GradCache accumulation over 2 chunks
    for tile, accumulate in ((0, 1), (3, 1), (0, 2)):
        ddp = nn.parallel.DistributedDataParallel(_linear())
        loss_fn = NTXentLoss(TEMPERATURE, tile_size=tile)
        contrastive_step(
            _embed_fn(ddp, mine["x_a"], mine["x_b"], accumulate), loss_fn, accumulate, no_sync=ddp.no_sync, model=ddp
        )
        out[f"ddp_{tile}_{accumulate}"] = _param_grads(ddp.module)
    # 3. unequal batches across ranks are rejected on every rank (no hang)
    rows = 2 if rank == 0 else 3
    try:
        NTXentLoss(TEMPERATURE)(torch.randn(rows, 5), torch.randn(rows, 5))
    except ValueError as exc:
        out["unequal"] = str(exc)
    return out


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    data = _data()
    return data, run_gloo(_one_rank, data, worlds=(2, 4), tmp_path=tmp_path_factory.mktemp("gloo"))


@pytest.mark.parametrize("world", [2, 4])
def test_processes_match_one_process_on_the_global_batch(world, distributed_results):
    data, by_world = distributed_results
    results = by_world[world]
    z_a = data["z_a"].clone().requires_grad_()
    z_b = data["z_b"].clone().requires_grad_()
    expected = NTXentLoss(TEMPERATURE, tile_size=0)(z_a, z_b)
    expected.backward()
    model = _linear()
    contrastive_step(_embed_fn(model, data["x_a"], data["x_b"], 1), NTXentLoss(TEMPERATURE, tile_size=0))
    expected_params = _param_grads(model)

    close = {"rtol": 0, "atol": 1e-6}
    for tile in (0, 3):
        mean_loss = torch.stack([r[f"loss_{tile}"] for r in results]).mean()
        torch.testing.assert_close(mean_loss, expected.detach(), **close)
        torch.testing.assert_close(torch.cat([r[f"grad_{tile}"][0] for r in results]), z_a.grad, **close)
        torch.testing.assert_close(torch.cat([r[f"grad_{tile}"][1] for r in results]), z_b.grad, **close)
    for key in ("ddp_0_1", "ddp_3_1", "ddp_0_2"):
        for r in results:  # DDP leaves the averaged gradient on every rank
            for got, want in zip(r[key], expected_params, strict=True):
                torch.testing.assert_close(got, want, **close)
    sizes = "[2, 3]" if world == 2 else "[2, 3, 3, 3]"
    assert all("same batch on every process" in r["unequal"] and sizes in r["unequal"] for r in results)


# -- tiled NT-Xent ----------------------------------------------------------------------------
@pytest.mark.parametrize(("batch", "tile"), [(7, 1), (7, 5), (16, 16), (33, 8), (33, 100)])
@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_tiled_equals_plain_in_float64(batch, tile, temperature):
    torch.manual_seed(batch)
    base_a, base_b = torch.randn(batch, 9, dtype=torch.float64), torch.randn(batch, 9, dtype=torch.float64)
    outcomes = []
    for tile_size in (0, tile):
        z_a, z_b = base_a.clone().requires_grad_(), base_b.clone().requires_grad_()
        loss = NTXentLoss(temperature, tile_size=tile_size)(z_a, z_b)
        loss.backward()
        outcomes.append((loss.detach(), z_a.grad, z_b.grad))
    assert outcomes[1][0].dtype == torch.float64
    for plain, tiled in zip(*outcomes, strict=True):
        torch.testing.assert_close(tiled, plain, rtol=0, atol=1e-6)


def test_tiled_in_float32_under_autocast_and_without_grad():
    z_a, z_b = torch.randn(12, 8), torch.randn(12, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = NTXentLoss(0.5, tile_size=4)(z_a.bfloat16(), z_b.bfloat16())
    assert loss.dtype == torch.float32
    with torch.no_grad():
        no_grad = NTXentLoss(0.5, tile_size=4)(z_a, z_b)
    torch.testing.assert_close(no_grad, NTXentLoss(0.5, tile_size=0)(z_a, z_b))
    tiny = NTXentLoss(1e-3, tile_size=5)(z_a * 100, z_a * 100)  # huge logits stay finite
    assert torch.isfinite(tiny)


def test_tiles_automatically_above_the_threshold(monkeypatch):
    loss = NTXentLoss()
    assert loss.block_rows(2048, 2048) is None  # 2²² entries: plain
    assert loss.block_rows(8192, 8192) == losses.BLOCK_ENTRIES // 8192
    assert NTXentLoss(tile_size=0).block_rows(10**6, 10**6) is None
    assert NTXentLoss(tile_size=64).block_rows(4, 4) == 64
    calls = []
    real = losses.tiled_ntxent
    monkeypatch.setattr(losses, "tiled_ntxent", lambda *a: calls.append(a[-1]) or real(*a))
    monkeypatch.setattr(losses, "AUTO_TILE_ENTRIES", 100)
    monkeypatch.setattr(losses, "BLOCK_ENTRIES", 60)
    loss(torch.randn(8, 4), torch.randn(8, 4))  # 16 × 16 = 256 entries > 100: tiled, 60 // 16 = 3 rows
    assert calls == [3]


@pytest.mark.parametrize("tile_size", [-1, 1.5, True, "auto"])
def test_tile_size_is_validated(tile_size):
    with pytest.raises(InvalidArgumentsError, match="tile_size"):
        NTXentLoss(tile_size=tile_size)


# -- GradCache --------------------------------------------------------------------------------
def test_gradcache_gives_the_full_batch_gradients():
    data = _data(3)
    grads = {}
    for accumulate in (1, 2, 4):
        model = _linear()
        loss = contrastive_step(_embed_fn(model, data["x_a"], data["x_b"], accumulate), NTXentLoss(0.2), accumulate)
        grads[accumulate] = (loss, _param_grads(model))
    for accumulate in (2, 4):
        torch.testing.assert_close(grads[accumulate][0], grads[1][0], rtol=0, atol=1e-10)
        for got, want in zip(grads[accumulate][1], grads[1][1], strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_gradcache_replays_dropout_and_keeps_batchnorm_stats_once_per_chunk():
    data = _data(4)

    def model_with_randomness():
        torch.manual_seed(5)
        return nn.Sequential(nn.Linear(DIM, 16), nn.Dropout(0.5), nn.BatchNorm1d(16), nn.Linear(16, 5)).double()

    # reference: the chunks embedded once each, with graph, in the same order (same dropout masks)
    reference = model_with_randomness()
    torch.manual_seed(6)
    embed = _embed_fn(reference, data["x_a"], data["x_b"], 4)
    parts = [embed(k)["z"] for k in range(4)]
    loss = NTXentLoss(0.2)(torch.cat([p[:, 0] for p in parts]), torch.cat([p[:, 1] for p in parts]))
    loss.backward()

    model = model_with_randomness()
    torch.manual_seed(6)
    ours = contrastive_step(_embed_fn(model, data["x_a"], data["x_b"], 4), NTXentLoss(0.2), 4, model=model)
    torch.testing.assert_close(ours, loss.detach(), rtol=0, atol=1e-10)
    for got, want in zip(_param_grads(model), _param_grads(reference), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-8)
    bn, bn_reference = model[2], reference[2]
    assert int(bn.num_batches_tracked) == 4
    torch.testing.assert_close(bn.running_mean, bn_reference.running_mean)
    torch.testing.assert_close(bn.running_var, bn_reference.running_var)
    assert torch.equal(torch.get_rng_state(), _rng_after_reference())


def _rng_after_reference() -> torch.Tensor:
    """The RNG state after the reference's four chunk passes (GradCache leaves the same state)."""
    data = _data(4)
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(DIM, 16), nn.Dropout(0.5), nn.BatchNorm1d(16), nn.Linear(16, 5)).double()
    torch.manual_seed(6)
    embed = _embed_fn(model, data["x_a"], data["x_b"], 4)
    with torch.no_grad():
        for k in range(4):
            embed(k)
    return torch.get_rng_state()


def test_accumulate_and_sync_batchnorm_settings(registries):
    from contrastive import recipe as recipes
    from contrastive.training.accelerator import maybe_sync_batchnorm as _maybe_sync_batchnorm

    with pytest.raises(RecipeError, match="trainer.accumulate must be at least 1"):
        recipes.validate(tiny_recipe_dict("out", accumulate=0))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert _maybe_sync_batchnorm(model, False, 2, torch.device("cuda")) is model
    assert _maybe_sync_batchnorm(model, True, 1, torch.device("cpu")) is model
    with pytest.raises(RecipeError, match="sync_batchnorm needs GPUs"):
        _maybe_sync_batchnorm(model, True, 2, torch.device("cpu"))
    converted = _maybe_sync_batchnorm(model, True, 2, torch.device("cuda"))
    assert isinstance(converted[1], nn.SyncBatchNorm)


# -- a real 2-process fit ---------------------------------------------------------------------
def _launch(recipe_path: Path, *overrides: str) -> tuple[int, str]:
    """``contrastive fit`` in 2 processes (:func:`tests.helpers.run_ranks`)."""
    return run_ranks(["fit", "--recipe", str(recipe_path), *overrides])


def test_two_process_cpu_fit_and_resume(tmp_path):
    out = tmp_path / "run"
    raw = tiny_recipe_dict(str(out), max_steps=2, batch_size=8, accumulate=2, checkpoint_every_steps=1)
    raw["optimizer"]["args"]["lr_scaling"] = "linear"
    raw["backbone"] = {"name": "resnet10t", "args": {"cifar_stem": True}}
    raw["eval"] = {"protocols": []}  # evaluation after fit is tested elsewhere
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(raw))

    code, output = _launch(recipe_path)
    assert code == 0, output[-5000:]
    results = json.loads((out / "results.json").read_text())
    assert results["processes"] == 2 and results["global_batch_size"] == 8 * 2 * 2 and results["steps"] == 2
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints == ["step_000000001", "step_000000002"]  # one writer: no duplicates, no temp dirs
    groups = json.loads((out / "checkpoints" / "step_000000002" / "optimizer.json").read_text())["param_groups"]
    assert groups[0]["initial_lr"] == pytest.approx(0.05 * 32 / 256)  # lr scaled by the global batch
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]  # one metrics writer

    code, output = _launch(recipe_path, "--trainer.resume", "true", "--trainer.max_steps", "3")
    assert code == 0, output[-5000:]
    assert output.count("resumed from") == 1  # printed by the main process only
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 3
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
