"""NNCLR: the loss against a naive float64 implementation (brute-force nearest neighbours over
the filled support set), neighbours without gradient and never past the queue's fill, the empty
support set, GradCache and one push per first-view projection, two processes = one, the checks
before training, and a real fit that resumes bit for bit with a half-full queue."""

from __future__ import annotations

import datetime

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import contrastive
from contrastive import diagnostics
from contrastive import recipe as recipes
from contrastive.errors import InvalidArgumentsError, RecipeError
from contrastive.methods.base import Batch
from contrastive.methods.nnclr import NNCLR
from contrastive.recipe import method_parts
from contrastive.training import fit
from tests.helpers import Head, Pool, assert_resume_is_exact, method_grad_cache_step, tiny_recipe_dict

TAU = 0.1




def nnclr(**args) -> NNCLR:
    torch.manual_seed(0)
    return NNCLR(Pool(), Head(6, 4), Head(4, 4), **{"queue_size": 20, "temperature": TAU, **args}).double()


def inputs(n: int = 6, seed: int = 0) -> tuple[list[torch.Tensor], Batch]:
    g = torch.Generator().manual_seed(seed)
    views = [torch.rand(n, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(2)]
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    return views, Batch(images=images, labels=torch.full((n,), -1), index=torch.arange(n))


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def queued_rows(n: int = 12, seed: int = 1) -> torch.Tensor:
    return unit(torch.randn(n, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))


def brute_force_neighbour(z: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """The support row of highest cosine similarity to each row of z, one comparison at a time."""
    rows = []
    for zi in z:
        best, best_sim = None, -float("inf")
        for s in support:
            sim = float((zi @ s / (zi.norm() * s.norm())).detach())
            if sim > best_sim:
                best, best_sim = s, sim
        rows.append(best)
    return torch.stack(rows)


def naive_ctr(nn_rows: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """−log exp(n̂n_i·p̂_i/τ) / Σ_k exp(n̂n_i·p̂_k/τ), averaged over i, one row at a time."""
    terms = []
    for i in range(nn_rows.shape[0]):
        a = nn_rows[i] / nn_rows[i].norm()
        positive = torch.exp(a @ (p[i] / p[i].norm()) / TAU)
        total = sum(torch.exp(a @ (p[k] / p[k].norm()) / TAU) for k in range(p.shape[0]))
        terms.append(-torch.log(positive / total))
    return torch.stack(terms).mean()


def reference(m: NNCLR, views: list[torch.Tensor], support: torch.Tensor | None) -> torch.Tensor:
    """The paper's loss L(NN(z1), p2)/2 + L(NN(z2), p1)/2 recomputed from the modules, float64."""
    h = [m.head(m.backbone(v)) for v in views]
    z = [unit(x) for x in h]
    p = [m.predictor(x) for x in h]
    nn_rows = [z_i.detach() if support is None else brute_force_neighbour(z_i, support) for z_i in z]
    return naive_ctr(nn_rows[0], p[1]) / 2 + naive_ctr(nn_rows[1], p[0]) / 2


def test_loss_is_the_naive_nnclr_loss_over_the_filled_support_set():
    m = nnclr()
    views, batch = inputs()
    queued = queued_rows()
    m.queue.push(queued)  # 12 of 20 rows filled
    out = m(views, batch)
    with diagnostics.collecting():
        loss, logs = m.loss(out, batch)
    assert out["z"].shape == out["p"].shape == (6, 2, 4)
    torch.testing.assert_close(out["z"].norm(dim=-1), torch.ones(6, 2, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(loss, reference(m, views, queued), rtol=0, atol=1e-6)
    assert logs["queue_fill"] == 12 / 20 and 0.0 <= logs["contrastive_accuracy"] <= 1.0


def test_the_neighbour_never_comes_from_rows_past_the_fill():
    m = nnclr()
    views, batch = inputs()
    m.queue.push(queued_rows(3))
    out = m(views, batch)
    with torch.no_grad():  # plant the perfect neighbours in the unfilled rows: they must be ignored
        m.queue.keys[3:9] = out["z"][:, 0].detach()
        m.queue.keys[9:15] = out["z"][:, 1].detach()
    for v in range(2):
        found = m.neighbours(out["z"][:, v])
        assert all(any(torch.equal(row, q) for q in m.queue.keys[:3]) for row in found)
        torch.testing.assert_close(found, brute_force_neighbour(out["z"][:, v], m.queue.keys[:3]), rtol=0, atol=0)
    torch.testing.assert_close(m.loss(out, batch)[0], reference(m, views, m.queue.keys[:3].clone()), rtol=0, atol=1e-6)


@pytest.mark.parametrize("filled", [0, 12])
def test_no_gradient_flows_through_the_neighbour(filled):
    m = nnclr()
    views, batch = inputs()
    if filled:
        m.queue.push(queued_rows(filled))
    out = m(views, batch)
    z = out["z"]
    z.retain_grad()
    out["p"].retain_grad()
    assert not m.neighbours(z[:, 0]).requires_grad
    loss, _ = m.loss(out, batch)
    loss.backward()
    assert z.grad is None  # the projections reach the loss only through their (detached) neighbours
    assert out["p"].grad is not None and bool(out["p"].grad.abs().sum() > 0)
    assert all(p.grad is not None for _, p in m.trainable_parameters())
    assert m.queue.keys.grad is None and not m.queue.keys.requires_grad


def test_an_empty_support_set_uses_z_itself_detached():
    m = nnclr()
    views, batch = inputs()
    out = m(views, batch)
    assert torch.equal(m.neighbours(out["z"][:, 1]), out["z"][:, 1].detach())
    loss, logs = m.loss(out, batch)
    torch.testing.assert_close(loss, reference(m, views, None), rtol=0, atol=1e-6)
    assert logs["queue_fill"] == 0.0
    assert int(m.queue.filled) == 0  # loss never pushes


def test_grad_cache_equals_one_chunk_and_pushes_each_first_view_projection_once():
    m = nnclr(queue_size=20)
    m.queue.push(queued_rows(5))
    views, batch = inputs(8)
    loss_1, outputs_1, grads_1 = method_grad_cache_step(m, views, batch, 1)
    loss_2, outputs_2, grads_2 = method_grad_cache_step(m, views, batch, 2)
    torch.testing.assert_close(loss_2, loss_1, rtol=0, atol=1e-10)
    for key in ("z", "p"):
        torch.testing.assert_close(outputs_2[key], outputs_1[key], rtol=0, atol=1e-12)
    for key, grad in grads_1.items():
        torch.testing.assert_close(grads_2[key], grad, rtol=0, atol=1e-10)
    assert int(m.queue.filled) == 5  # forward, loss and GradCache's replays never push
    m.after_step(outputs_2, batch, 1, 10)
    assert int(m.queue.filled) == 13 and int(m.queue.pointer) == 13
    assert torch.equal(m.queue.read()[5:], outputs_2["z"][:, 0])  # the whole step's view-0 projections, once, in order


def test_stats_buffers_are_the_batchnorm_statistics_not_the_queue():
    torch.manual_seed(0)
    registries = contrastive.load_registries(autoload=False)
    head = registries.heads.build("mlp", in_dim=6, hidden_dim=8, out_dim=4)
    predictor = registries.heads.build("mlp", in_dim=4, hidden_dim=8, out_dim=4)
    m = NNCLR(Pool(), head, predictor, queue_size=8)
    stats = {id(b) for b in m.stats_buffers()}
    assert stats and {id(b) for b in predictor.buffers()} <= stats
    assert not stats & {id(b) for b in m.queue.buffers()}


def test_bad_arguments_are_refused():
    for args, match in [({"queue_size": 0}, "queue_size"), ({"queue_size": 2.5}, "queue_size"),
                        ({"queue_size": True}, "queue_size"), ({"temperature": 0.0}, "temperature"),
                        ({"temperature": -1}, "temperature")]:
        with pytest.raises(InvalidArgumentsError, match=match):
            NNCLR(Pool(), Head(6, 4), Head(4, 4), **args)
    with pytest.raises(RecipeError, match="out_dim"):
        NNCLR(Pool(), nn.Linear(6, 4), Head(4, 4))
    with pytest.raises(RecipeError, match=r"predictor's out_dim 3 must equal the head's out_dim 4"):
        NNCLR(Pool(), Head(6, 4), Head(4, 3))


def test_registered_with_a_required_predictor():
    registries = contrastive.load_registries(autoload=False)
    assert registries.methods.get("nnclr") is NNCLR
    assert method_parts(NNCLR) == {"backbone": True, "head": True, "predictor": True}
    raw = tiny_recipe_dict("/tmp/unused")
    raw["method"] = {"name": "nnclr", "args": {"queue_size": 64}}
    with pytest.raises(RecipeError, match="method 'nnclr' needs a predictor"):
        recipes.validate(raw, registries)


def test_check_data_refuses_a_queue_larger_than_an_epoch_of_projections():
    m = nnclr(queue_size=96)
    m.check_data(100, 16)  # 6 steps × 16 = 96 projections an epoch: fits exactly
    with pytest.raises(RecipeError, match=r"queue_size 96 is larger than the 80 projections one epoch pushes.*queue_size 80"):
        m.check_data(95, 16)


def nnclr_recipe(out, queue_size: int = 64, **trainer) -> dict:
    raw = tiny_recipe_dict(str(out), max_steps=4, checkpoint_every_steps=2, keep_last=5, num_workers=0, **trainer)
    raw["method"] = {"name": "nnclr", "args": {"queue_size": queue_size}}
    raw["predictor"] = {"name": "mlp", "args": {"hidden_dim": 32, "out_dim": 16}}
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    return raw


def test_a_queue_larger_than_the_data_stops_before_training(tmp_path):
    registries = contrastive.load_registries(autoload=False)
    with pytest.raises(RecipeError, match=r"^method 'nnclr': queue_size 4096 is larger than the 1344 projections"):
        fit(recipes.validate(nnclr_recipe(tmp_path, queue_size=4096), registries), registries)
    assert not (tmp_path / "checkpoints").exists()


def test_fit_resumes_bit_for_bit_with_a_half_full_queue(tmp_path, registries):
    out = tmp_path / "run"
    results = fit(recipes.validate(nnclr_recipe(out), registries), registries)
    assert results["steps"] == 4 and torch.isfinite(torch.tensor(results["loss"]))
    at_2 = load_file(str(out / "checkpoints/step_000000002/model.safetensors"))
    at_4 = load_file(str(out / "checkpoints/step_000000004/model.safetensors"))
    assert int(at_2["queue.filled"]) == 32 and int(at_2["queue.pointer"]) == 32  # half full at the resume point
    assert int(at_4["queue.filled"]) == 64 and int(at_4["queue.pointer"]) == 0
    assert any(key.startswith("predictor.") for key in at_4)
    assert not torch.equal(at_2["queue.keys"][32:], at_4["queue.keys"][32:])
    assert_resume_is_exact(out, tmp_path / "copy",
                           lambda copy_dir: fit(recipes.validate(nnclr_recipe(copy_dir, resume=True), registries), registries))


# -- two processes with a non-empty support set ------------------------------------------------
WORLD = 2


def _worker(rank: int, tmp_path) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=rank,
                                         world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    try:
        m = nnclr()
        queued = queued_rows(12)
        m.queue.push(queued[rank * 6:(rank + 1) * 6])  # gathered in rank order: both ranks hold all 12
        views, batch = inputs(8)
        n = 8 // WORLD
        part = [v[rank * n:(rank + 1) * n] for v in views]
        loss, _ = m.loss(m(part, batch.slice(rank * n, (rank + 1) * n)), batch)
        loss.backward()
        grads = {k: p.grad.clone() for k, p in m.trainable_parameters()}
        torch.save({"loss": loss.detach(), "grads": grads, "queue": m.queue.read().clone()}, tmp_path / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_equal_one_process_with_a_filled_support_set(tmp_path):
    torch.multiprocessing.start_processes(_worker, args=(tmp_path,), nprocs=WORLD, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    m = nnclr()
    m.queue.push(queued_rows(12))
    views, batch = inputs(8)
    loss, _ = m.loss(m(views, batch), batch)
    loss.backward()
    for r in ranks:
        assert torch.equal(r["queue"], m.queue.read())
    torch.testing.assert_close(torch.stack([r["loss"] for r in ranks]).mean(), loss.detach(), rtol=0, atol=1e-6)
    for key, p in m.trainable_parameters():
        torch.testing.assert_close(torch.stack([r["grads"][key] for r in ranks]).mean(0), p.grad, rtol=0, atol=1e-6)
