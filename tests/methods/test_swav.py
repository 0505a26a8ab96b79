"""SwAV: Sinkhorn-Knopp and the loss against lightly and a written-out reference (float64, 1e-6),
the prototypes (normalised, frozen then learning), the queue (start, use once full), the checks
before training, the diagnostics and the ImageNet recipe's settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from contrastive import diagnostics
from contrastive import recipe as recipes
from contrastive.cli import main
from contrastive.errors import InvalidArgumentsError, RecipeError
from contrastive.methods.base import Batch, split_loss
from contrastive.methods.sinkhorn import sinkhorn_knopp
from contrastive.methods.swav import SwAV
from tests.helpers import Head, Pool

lightly_swav = pytest.importorskip("lightly.loss.swav_loss")

TAU, EPS = 0.1, 0.05
CLOSE = {"rtol": 0, "atol": 1e-6}


def swav(**args) -> SwAV:
    torch.manual_seed(0)
    return SwAV(Pool(), Head(6, 4), **{"prototypes": 5, **args}).double()


def multicrop(n: int = 6, seed: int = 0, local: int = 3) -> tuple[list[torch.Tensor], Batch]:
    """2 global 8 px views and ``local`` 4 px views of n random images, float64."""
    g = torch.Generator().manual_seed(seed)
    views = [torch.rand(n, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(2)]
    views += [torch.rand(n, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(local)]
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    return views, Batch(images=images, labels=torch.full((n,), -1), index=torch.arange(n))


def unit_scores(n: int, k: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(n, 16, generator=g, dtype=torch.float64), dim=1)
    c = F.normalize(torch.randn(k, 16, generator=g, dtype=torch.float64), dim=1)
    return (z @ c.T).to(dtype)


def reference_sinkhorn(scores: np.ndarray, epsilon: float, iterations: int) -> np.ndarray:
    """The paper's matrix scaling written out with scaling vectors: P = exp(S/ε) ``(B, K)``,
    u (per prototype) and v (per sample) alternately fitted to the marginals 1/K and 1/B;
    the codes are B · v_b P_bk u_k (each sample's row sums to 1)."""
    p = np.exp(scores / epsilon)
    b, k = p.shape
    v = np.ones(b)
    for _ in range(iterations):
        u = (1.0 / k) / (p.T @ v)  # prototypes' sums to 1/K
        v = (1.0 / b) / (p @ u)  # samples' sums to 1/B
    return b * v[:, None] * p * u[None, :]


def reference_loss(scores: torch.Tensor, queue_scores: list[torch.Tensor] | None, assign: int = 2) -> torch.Tensor:
    """The official main_swav.py loss, one view pair and one sample at a time, codes from the reference Sinkhorn."""
    n, views, _ = scores.shape
    total = 0.0
    for i in range(assign):
        rows = scores[:, i].detach().numpy()
        if queue_scores is not None:
            rows = np.concatenate([queue_scores[i].numpy(), rows])
        q = torch.from_numpy(reference_sinkhorn(rows, EPS, 3)[-n:])
        sub = 0.0
        for v in range(views):
            if v == i:
                continue
            for b in range(n):
                log_p = scores[b, v] / TAU - torch.logsumexp(scores[b, v] / TAU, dim=0)
                sub = sub - (q[b] * log_p).sum() / n
        total = total + sub / (views - 1)
    return total / assign


# -- Sinkhorn-Knopp ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "k", "epsilon", "iterations"), [(12, 5, 0.05, 3), (6, 30, 0.05, 3), (40, 7, 0.1, 10)])
def test_sinkhorn_equals_lightly_and_the_written_out_scaling(n, k, epsilon, iterations):
    scores = unit_scores(n, k, seed=n)
    ours = sinkhorn_knopp(scores, epsilon, iterations)
    torch.testing.assert_close(ours, lightly_swav.sinkhorn(scores, iterations, epsilon), **CLOSE)
    torch.testing.assert_close(ours, torch.from_numpy(reference_sinkhorn(scores.numpy(), epsilon, iterations)), **CLOSE)
    torch.testing.assert_close(ours.sum(dim=1), torch.ones(n, dtype=torch.float64), rtol=0, atol=1e-12)


def test_sinkhorn_converges_to_an_equipartition_and_epsilon_sets_how_hard():
    scores = unit_scores(30, 6, seed=3)
    codes = sinkhorn_knopp(scores, 0.05, 200)
    torch.testing.assert_close(codes.sum(dim=0), torch.full((6,), 5.0, dtype=torch.float64), rtol=0, atol=1e-6)
    assert sinkhorn_knopp(scores, 0.01, 3).max(dim=1).values.mean() > sinkhorn_knopp(scores, 0.5, 3).max(dim=1).values.mean()


def test_a_small_epsilon_does_not_overflow_in_float32():
    scores = unit_scores(16, 5, seed=1, dtype=torch.float32)
    assert not torch.isfinite(lightly_swav.sinkhorn(scores, 3, 0.005)).all()  # exp(200) overflows float32
    codes = sinkhorn_knopp(scores, 0.005, 3)
    assert codes.dtype == torch.float32 and torch.isfinite(codes).all()
    torch.testing.assert_close(codes, sinkhorn_knopp(scores.double(), 0.005, 3).float(), rtol=0, atol=1e-5)


# -- the loss ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("local", [0, 3])
def test_loss_and_gradients_equal_lightly_swav_loss_and_the_reference(local):
    m = swav()
    views, batch = multicrop(local=local)
    scores = m(views, batch)["scores"]
    assert scores.shape == (6, 2 + local, 5)
    loss = m.loss({"scores": scores, "z": torch.zeros(6, 2 + local, 4, dtype=torch.float64)}, batch)
    criterion = lightly_swav.SwaVLoss(temperature=TAU, sinkhorn_iterations=3, sinkhorn_epsilon=EPS)
    lightly = criterion([scores[:, 0], scores[:, 1]], [scores[:, v] for v in range(2, 2 + local)]).reshape(())
    torch.testing.assert_close(loss, lightly, **CLOSE)
    torch.testing.assert_close(loss, reference_loss(scores, None), **CLOSE)
    ours = torch.autograd.grad(loss, list(m.parameters()), retain_graph=True)
    theirs = torch.autograd.grad(lightly, list(m.parameters()))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **CLOSE)
    assert any(g.abs().sum() > 0 for g in ours)


def test_a_full_queue_joins_the_sinkhorn_input_as_lightly_and_the_official_code_use_it():
    m = swav(queue_size=9, queue_start_epochs=0)
    views, batch = multicrop()
    queued = [F.normalize(torch.randn(9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(s)), dim=1)
              for s in (1, 2)]
    outputs = m(views, batch)
    without = m.loss(outputs, batch)
    for queue, rows in zip(m.queues, queued, strict=True):
        queue.push(rows[:5])
    assert m.queue_scores(0) is None  # 5 of 9 rows: not used yet
    torch.testing.assert_close(m.loss(outputs, batch), without, rtol=0, atol=0)
    for queue, rows in zip(m.queues, queued, strict=True):
        queue.push(rows[5:])
    loss = m.loss(outputs, batch)
    scores = outputs["scores"]
    queue_scores = [rows @ m.prototypes.weight.detach().T for rows in queued]
    criterion = lightly_swav.SwaVLoss(temperature=TAU, sinkhorn_iterations=3, sinkhorn_epsilon=EPS)
    lightly = criterion([scores[:, 0], scores[:, 1]], [scores[:, v] for v in range(2, 5)], queue_outputs=queue_scores)
    torch.testing.assert_close(loss, lightly.reshape(()), **CLOSE)
    torch.testing.assert_close(loss, reference_loss(scores, queue_scores), **CLOSE)
    assert abs(loss.item() - without.item()) > 1e-4  # the queue changed the codes


# -- the prototypes ----------------------------------------------------------------------------------
def test_prototypes_are_unit_vectors_frozen_for_the_first_epoch_then_learn():
    m = swav(freeze_prototypes_epochs=1)
    m.set_training_length(steps_per_epoch=2, total_steps=6)
    assert m.frozen_steps == 2
    # normalised at construction (in float32, before .double())
    torch.testing.assert_close(m.prototypes.weight.norm(dim=1), torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-6)
    optimizer = torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    start = F.normalize(m.prototypes.weight.detach(), dim=1)  # in float64, as after_step normalises
    head_start = m.head.weight.detach().clone()
    for step in range(1, 5):
        views, batch = multicrop(seed=step)
        outputs = m(views, batch)
        loss = split_loss(m.loss(outputs, batch))[0]
        optimizer.zero_grad()
        loss.backward()
        grad = m.prototypes.weight.grad
        optimizer.step()
        m.after_step({k: v.detach() for k, v in outputs.items()}, batch, step, 6)
        weight = m.prototypes.weight.detach()
        torch.testing.assert_close(weight.norm(dim=1), torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-12)
        if step <= 2:  # frozen: a zero gradient, and only weight decay's rescaling, undone by the normalisation
            assert torch.equal(grad, torch.zeros_like(grad)), step
            torch.testing.assert_close(weight, start, rtol=0, atol=1e-12)
            assert not torch.equal(m.head.weight, head_start)  # the rest of the model trains meanwhile
        else:
            assert grad.abs().max() > 0, step
    assert (m.prototypes.weight.detach() - start).abs().max() > 1e-3
    assert int(m.last_step) == 4


def test_outside_a_run_nothing_is_frozen():
    m = swav()
    views, batch = multicrop()
    loss = split_loss(m.loss(m(views, batch), batch))[0]
    loss.backward()
    assert m.prototypes.weight.grad.abs().max() > 0


# -- the queue --------------------------------------------------------------------------------------
def test_the_queue_fills_from_its_start_epoch_with_each_assignment_view():
    m = swav(queue_size=12, queue_start_epochs=1)
    m.set_training_length(steps_per_epoch=2, total_steps=6)
    for step in range(1, 5):
        views, batch = multicrop(seed=step)
        outputs = {k: v.detach() for k, v in m(views, batch).items()}
        m.after_step(outputs, batch, step, 6)
        assert len(m.queues[0]) == len(m.queues[1]) == {1: 0, 2: 0, 3: 6, 4: 12}[step], step
    assert m.queue_scores(0).shape == (12, 5)
    torch.testing.assert_close(m.queues[0].keys[6:], outputs["z"][:, 0], rtol=0, atol=0)
    torch.testing.assert_close(m.queues[1].keys[6:], outputs["z"][:, 1], rtol=0, atol=0)


def test_a_queue_that_would_start_after_the_run_is_reported():
    m = swav(queue_size=12, queue_start_epochs=15)
    with pytest.warns(UserWarning, match="never used.*queue_start_epochs"):
        m.set_training_length(steps_per_epoch=10, total_steps=30)


# -- checks before training ---------------------------------------------------------------------------
def test_views_must_put_the_assignment_views_in_the_first_group():
    m = swav()
    m.check_views([2])
    m.check_views([2, 6])
    with pytest.raises(RecipeError, match="first 2 views.*that group has 1 views.*assign_views 1"):
        m.check_views([1, 6])
    with pytest.raises(RecipeError, match="at least 2 views"):
        swav(assign_views=1).check_views([1])
    swav(assign_views=1).check_views([1, 4])


@pytest.mark.parametrize(("arg", "value", "message"), [
    ("epsilon", 0.0, "epsilon must be > 0"), ("prototypes", 0, "prototypes must be at least 1"),
    ("temperature", -0.1, "temperature must be > 0"), ("queue_size", -1, "queue_size must be >= 0"),
])
def test_bad_arguments_are_one_line_errors(arg, value, message):
    with pytest.raises(InvalidArgumentsError, match=message):
        swav(**{arg: value})


def test_bad_settings_stop_check_and_fit_with_one_line_and_exit_2(capsys, tmp_path):
    assert main(["check", "--recipe", "swav_fmnist_cpu", "--method.args.epsilon", "0"]) == 2
    error = capsys.readouterr().err.strip()
    assert "epsilon" in error and "> 0" in error and len(error.splitlines()) == 1, error
    # the quickstart's one augmentation list gives 2 views: codes for 3 cannot come from them
    assert main(["fit", "--method.name", "swav", "--method.args.assign_views", "3", "--trainer.progress", "false",
                 "--trainer.output_dir", str(tmp_path / "run"), "--eval.protocols", "[]"]) == 2
    error = capsys.readouterr().err.strip()
    assert "first 3 views" in error and "--method.args.assign_views 2" in error and len(error.splitlines()) == 1, error


# -- diagnostics ------------------------------------------------------------------------------------
def test_diagnostics_are_the_embedding_numbers_and_the_prototype_usage():
    m = swav(queue_size=4)
    views, batch = multicrop()
    outputs = m(views, batch)
    with diagnostics.collecting():
        loss, logs = split_loss(m.loss(outputs, batch))
    assert set(logs) == {*diagnostics.EMBEDDING_NAMES, "prototype_usage", "code_entropy", "queue_fill"}
    best = outputs["scores"][:, :2].argmax(dim=-1).unique().numel()
    assert logs["prototype_usage"] == pytest.approx(best / 5)
    assert 0 < logs["code_entropy"] < 1 and logs["queue_fill"] == 0
    q = torch.cat([sinkhorn_knopp(outputs["scores"][:, v].detach(), EPS, 3) for v in (0, 1)])
    assert logs["code_entropy"] == pytest.approx(float(-(q * q.log()).sum(dim=1).mean()) / math.log(5), abs=1e-12)
    assert torch.equal(loss, split_loss(m.loss(outputs, batch))[0])


# -- the ImageNet recipe -----------------------------------------------------------------------------
def test_the_imagenet_recipe_has_the_papers_settings(registries):
    recipe = recipes.load("swav_r50", registries=registries)
    assert recipe.method.name == "swav" and recipe.backbone.name == "resnet50"
    assert recipe.method.args == {"prototypes": 3000, "temperature": 0.1, "epsilon": 0.05, "sinkhorn_iterations": 3,
                                  "freeze_prototypes_epochs": 1, "queue_size": 0}
    assert [(g.count, g.augmentation[0].args["size"], g.augmentation[0].args["scale"]) for g in recipe.views] == [
        (2, 224, [0.14, 1.0]), (6, 96, [0.05, 0.14])]
    assert recipe.head.args == {"hidden_dim": 2048, "out_dim": 128, "num_layers": 2}
    assert recipe.optimizer.name == "lars" and recipe.optimizer.args["lr"] * 4096 / 256 == pytest.approx(4.8)
    assert recipe.optimizer.args["weight_decay"] == 1e-6 and recipe.optimizer.args["lr_scaling"] == "linear"
    assert recipe.scheduler.args == {"warmup_epochs": 10, "min_lr_ratio": 0.001}
    assert recipe.trainer.global_batch_size == 4096 and recipe.trainer.sync_batchnorm
