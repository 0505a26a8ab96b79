"""BYOL, SimSiam, Barlow Twins and VICReg: each loss equals an independent implementation.

Each method's loss is checked (float64, 1e-6) against lightly's ``NegativeCosineSimilarity``,
``BarlowTwinsLoss`` and ``VICRegLoss`` where lightly is installed, and always against the
written-out references below (loops over the papers' formulas, not the vectorised code under
test).  Then the methods' own rules: stop-gradients, the momentum target and its schedule,
argument checks, the diagnostics they log, and the per-group learning rates they ask for.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import contrastive
from contrastive import diagnostics
from contrastive.components.optim import lars, sgd, warmup_cosine
from contrastive.errors import InvalidArgumentsError, RecipeError
from contrastive.methods.barlow_twins import BarlowTwins, barlow_twins_loss
from contrastive.methods.base import Batch, split_loss
from contrastive.methods.byol import BYOL
from contrastive.methods.simsiam import SimSiam
from contrastive.methods.vicreg import VICReg, vicreg_loss
from contrastive.training.lr_groups import pin_fixed_groups, split_param_groups

CLOSE = {"rtol": 0, "atol": 1e-6}


def pairs(n: int = 12, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64) * 2 + 0.5
    return a, a + 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64)


# -- written-out references (the papers' formulas, element by element) -----------------------
def cosine_ref(u: torch.Tensor, v: torch.Tensor) -> float:
    dot = sum(float(x) * float(y) for x, y in zip(u, v, strict=True))
    return dot / (math.sqrt(sum(float(x) ** 2 for x in u)) * math.sqrt(sum(float(y) ** 2 for y in v)))


def byol_ref(p1, p2, t1, t2) -> float:
    n = p1.shape[0]
    return sum((2 - 2 * cosine_ref(p1[i], t2[i])) + (2 - 2 * cosine_ref(p2[i], t1[i])) for i in range(n)) / n


def simsiam_ref(p1, p2, z1, z2) -> float:
    n = p1.shape[0]
    return sum(-0.5 * cosine_ref(p1[i], z2[i]) - 0.5 * cosine_ref(p2[i], z1[i]) for i in range(n)) / n


def barlow_ref(a, b, lam) -> float:
    n, d = a.shape

    def norm(x):
        out = []
        for k in range(d):
            col = [float(x[i, k]) for i in range(n)]
            mean = sum(col) / n
            var = sum((c - mean) ** 2 for c in col) / n
            out.append([(c - mean) / math.sqrt(var + 1e-5) for c in col])
        return out  # out[k][i]

    na, nb = norm(a), norm(b)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(na[i][r] * nb[j][r] for r in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lam * c * c
    return loss


def vicreg_ref(a, b, lam=25.0, mu=25.0, nu=1.0) -> float:
    n, d = a.shape
    inv = sum((float(a[i, k]) - float(b[i, k])) ** 2 for i in range(n) for k in range(d)) / (n * d)

    def var_cov(x):
        means = [sum(float(x[i, k]) for i in range(n)) / n for k in range(d)]
        cov = [[sum((float(x[i, p]) - means[p]) * (float(x[i, q]) - means[q]) for i in range(n)) / (n - 1)
                for q in range(d)] for p in range(d)]
        v = sum(max(0.0, 1 - math.sqrt(cov[k][k] + 1e-4)) for k in range(d)) / d
        c = sum(cov[p][q] ** 2 for p in range(d) for q in range(d) if p != q) / d
        return v, c

    (va, ca), (vb, cb) = var_cov(a), var_cov(b)
    return lam * inv + mu * (va + vb) / 2 + nu * (ca + cb)


# -- tiny methods ---------------------------------------------------------------------------
class Pool(nn.Module):
    """(N, 3, H, W) -> (N, 6): a conv, tanh, mean over the pixels."""

    num_features = 6

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)

    def forward(self, x):
        return torch.tanh(self.conv(x)).mean(dim=(2, 3))


def heads():
    return contrastive.load_registries(autoload=False).heads


def build(name: str, **args):
    torch.manual_seed(0)
    backbone = Pool()
    head = heads().build("mlp", in_dim=6, hidden_dim=16, out_dim=8, batch_norm=True)
    if name in ("byol", "simsiam"):
        predictor = heads().build("mlp", in_dim=8, hidden_dim=4, out_dim=8, batch_norm=True)
        cls = BYOL if name == "byol" else SimSiam
        return cls(backbone, head, predictor, **args).double()
    return (BarlowTwins if name == "barlow_twins" else VICReg)(backbone, head, **args).double()


def inputs(n: int = 10):
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    x = images.double() / 255
    return [x, x.flip(-1)], Batch(images, torch.full((n,), -1), torch.arange(n))


# -- the losses -----------------------------------------------------------------------------
def test_byol_loss_is_the_symmetrised_normalised_mse():
    method = build("byol")
    views, batch = inputs()
    out = method(views, batch)
    loss = method.loss(out, batch)
    p, t = out["p"].detach(), out["t"]
    want = byol_ref(p[:, 0], p[:, 1], t[:, 0], t[:, 1])
    torch.testing.assert_close(loss.detach(), torch.tensor(want, dtype=torch.float64), **CLOSE)


def test_simsiam_loss_is_the_negative_cosine():
    method = build("simsiam")
    views, batch = inputs()
    out = method(views, batch)
    loss = method.loss(out, batch)
    p, z = out["p"].detach(), out["z"].detach()
    want = simsiam_ref(p[:, 0], p[:, 1], z[:, 0], z[:, 1])
    torch.testing.assert_close(loss.detach(), torch.tensor(want, dtype=torch.float64), **CLOSE)


@pytest.mark.parametrize("lam", [5e-3, 0.5])
def test_barlow_twins_loss_equals_the_reference(lam):
    a, b = pairs()
    torch.testing.assert_close(barlow_twins_loss(a, b, lam), torch.tensor(barlow_ref(a, b, lam), dtype=torch.float64), **CLOSE)


@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 2.0, 3.0)])
def test_vicreg_loss_equals_the_reference(weights):
    a, b = pairs(n=9, d=4)
    want = vicreg_ref(a, b, *weights)
    torch.testing.assert_close(vicreg_loss(a, b, *weights), torch.tensor(want, dtype=torch.float64), **CLOSE)


def test_losses_equal_lightly():
    loss_module = pytest.importorskip("lightly.loss")
    a, b = pairs()
    c, d = pairs(seed=1)
    negcos = loss_module.NegativeCosineSimilarity()
    method = build("simsiam")
    views, batch = inputs()
    out = method(views, batch)
    p, z = out["p"].detach(), out["z"].detach()
    torch.testing.assert_close(method.loss(out, batch).detach(),
                               0.5 * (negcos(p[:, 0], z[:, 1]) + negcos(p[:, 1], z[:, 0])), **CLOSE)
    byol = build("byol")
    out = byol(views, batch)
    p, t = out["p"].detach(), out["t"]
    torch.testing.assert_close(byol.loss(out, batch).detach(),
                               4 + 2 * (negcos(p[:, 0], t[:, 1]) + negcos(p[:, 1], t[:, 0])), **CLOSE)
    for lam in (5e-3, 0.1):
        torch.testing.assert_close(barlow_twins_loss(a, b, lam), loss_module.BarlowTwinsLoss(lambda_param=lam)(a, b), **CLOSE)
    torch.testing.assert_close(vicreg_loss(c, d), loss_module.VICRegLoss()(c, d), **CLOSE)
    torch.testing.assert_close(vicreg_loss(c, d, 1.0, 2.0, 3.0),
                               loss_module.VICRegLoss(lambda_param=1.0, mu_param=2.0, nu_param=3.0)(c, d), **CLOSE)


def test_losses_are_float32_under_bf16_autocast():
    a, b = pairs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for value in (barlow_twins_loss(a.float(), b.float()), vicreg_loss(a.float(), b.float())):
            assert value.dtype == torch.float32


# -- stop-gradients, the momentum target ----------------------------------------------------
def test_simsiam_stop_gradient():
    """z leaves forward detached; the encoder's gradient is exactly the one through the predictions."""
    views, batch = inputs()
    method = build("simsiam")
    out = method(views, batch)
    assert out["p"].requires_grad and not out["z"].requires_grad
    method.loss(out, batch).backward()
    got = {n: p.grad.clone() for n, p in method.named_parameters()}
    twin = build("simsiam")  # the same loss written with an explicit detach of a recomputed z
    z = [twin.head(twin.backbone(v)) for v in views]
    p = [twin.predictor(zv) for zv in z]
    cos = torch.nn.functional.cosine_similarity
    (-0.5 * cos(p[0], z[1].detach()).mean() - 0.5 * cos(p[1], z[0].detach()).mean()).backward()
    for n, param in twin.named_parameters():
        torch.testing.assert_close(got[n], param.grad, **CLOSE)


def test_byol_target_gets_no_gradient_and_follows_the_cosine_schedule():
    method = build("byol", momentum=0.9, final_momentum=1.0)
    names = {name for name, _ in method.trainable_parameters()}
    assert names and not any(n.startswith("target.") for n in names)
    views, batch = inputs()
    out = method(views, batch)
    assert not out["t"].requires_grad and not out["z"].requires_grad and out["p"].requires_grad
    method.loss(out, batch).backward()
    assert all(p.grad is None for p in method.target.parameters())
    with torch.no_grad():
        for p in method.head.parameters():
            p.add_(1.0)
    before = {n: p.clone() for n, p in method.target.named_parameters()}
    online = dict(method.online_encoder().named_parameters())
    method.after_step(out, batch, step=1, total_steps=4)
    tau = 1 - (1 - 0.9) * (math.cos(math.pi / 4) + 1) / 2
    assert method.momentum_at(1, 4) == pytest.approx(tau)
    for name, p in method.target.named_parameters():
        key = name.removeprefix("module.")
        torch.testing.assert_close(p, tau * before[name] + (1 - tau) * online[key], **CLOSE)
    assert method.momentum_at(4, 4) == 1.0


@pytest.mark.parametrize(("name", "args", "message"), [
    ("byol", {"momentum": 1.2}, "momentum"),
    ("byol", {"momentum": 0.999, "final_momentum": 0.99}, "final_momentum"),
    ("barlow_twins", {"lambda_offdiag": -1.0}, "lambda_offdiag"),
    ("barlow_twins", {"bias_lr_scale": 0}, "bias_lr_scale"),
    ("vicreg", {"variance": "big"}, "variance"),
])
def test_bad_arguments_are_one_line_errors(name, args, message):
    with pytest.raises(InvalidArgumentsError, match=message) as info:
        build(name, **args)
    assert "\n" not in str(info.value)


def test_predictor_must_map_the_head_dimension_back():
    head = heads().build("mlp", in_dim=6, hidden_dim=16, out_dim=8)
    predictor = heads().build("mlp", in_dim=8, hidden_dim=4, out_dim=5)
    with pytest.raises(InvalidArgumentsError, match="out_dim 5 must equal the head's out_dim 8"):
        SimSiam(Pool(), head, predictor)


def test_vicreg_refuses_a_global_batch_of_one():
    with pytest.raises(RecipeError, match="at least 2"):
        build("vicreg").check_data(100, 1)


# -- diagnostics ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["byol", "simsiam", "barlow_twins", "vicreg"])
def test_logs_the_negative_free_diagnostics_only(name):
    method = build(name)
    views, batch = inputs()
    out = method(views, batch)
    assert not isinstance(method.loss(out, batch), tuple)  # nothing on the steps the loop does not record
    with diagnostics.collecting():
        _, logs = split_loss(method.loss(out, batch))
    assert set(logs) == set(diagnostics.EMBEDDING_NAMES)
    z = out["z"].detach().reshape(-1, 8)
    want = torch.nn.functional.normalize(z, dim=1).std(dim=0).mean()
    assert logs["embedding_std"] == pytest.approx(float(want), abs=1e-9)


def test_embedding_std_is_one_over_sqrt_d_when_spread_and_zero_when_collapsed():
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(4000, 2, 16, generator=g, dtype=torch.float64)
    assert diagnostics.embedding_tally(spread).result()["embedding_std"] == pytest.approx(1 / 4, rel=0.02)
    collapsed = torch.ones(50, 2, 16, dtype=torch.float64) + 1e-9 * torch.randn(50, 2, 16, generator=g, dtype=torch.float64)
    assert diagnostics.embedding_tally(collapsed).result()["embedding_std"] < 1e-6


# -- per-group learning rates ----------------------------------------------------------------
def test_barlow_twins_biases_train_at_the_scaled_lr_under_lars():
    method = build("barlow_twins", bias_lr_scale=0.024)
    named = list(method.trainable_parameters())
    optimizer = lars(named, batch_size=256, lr=0.2, lr_scaling="linear")
    split_param_groups(optimizer, named, method.param_group_options)
    by_name = {g["name"]: g for g in optimizer.param_groups}
    assert set(by_name) == {"decay", "no_decay+lr_scale=0.024"}
    assert by_name["decay"]["lr"] == pytest.approx(0.2)
    assert by_name["no_decay+lr_scale=0.024"]["lr"] == pytest.approx(0.0048)
    assert all(p.ndim <= 1 for p in by_name["no_decay+lr_scale=0.024"]["params"])
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(named)
    scheduler = warmup_cosine(optimizer, steps_per_epoch=2, total_steps=10, warmup_epochs=1)
    pin_fixed_groups(scheduler, optimizer)
    ratios = [optimizer.param_groups[1]["lr"] / optimizer.param_groups[0]["lr"]]
    for _ in range(5):
        optimizer.step()
        scheduler.step()
        ratios.append(optimizer.param_groups[1]["lr"] / optimizer.param_groups[0]["lr"])
    assert ratios == pytest.approx([0.024] * 6)


def test_simsiam_predictor_lr_stays_fixed_while_the_rest_decays():
    method = build("simsiam")
    named = list(method.trainable_parameters())
    optimizer = sgd(named, batch_size=512, lr=0.05, weight_decay=1e-4)
    split_param_groups(optimizer, named, method.param_group_options)
    scheduler = warmup_cosine(optimizer, steps_per_epoch=2, total_steps=10, warmup_epochs=0)
    pin_fixed_groups(scheduler, optimizer)
    fixed = [g for g in optimizer.param_groups if g.get("fixed_lr")]
    predictor = {id(p) for p in method.predictor.parameters()}
    assert {id(p) for g in fixed for p in g["params"]} == predictor
    for _ in range(9):
        optimizer.step()
        scheduler.step()
    assert all(g["lr"] == pytest.approx(0.1) for g in fixed)
    assert all(g["lr"] < 1e-3 for g in optimizer.param_groups if not g.get("fixed_lr"))
    state = scheduler.state_dict()  # the pinned multiplier is saved and restored with the scheduler
    again = warmup_cosine(optimizer, steps_per_epoch=2, total_steps=10, warmup_epochs=0)
    pin_fixed_groups(again, optimizer)
    again.load_state_dict(state)


def test_no_options_leave_the_groups_alone_and_bad_options_are_refused():
    method = build("vicreg")
    named = list(method.trainable_parameters())
    optimizer = sgd(named, batch_size=256)
    before = [g["name"] for g in optimizer.param_groups]
    split_param_groups(optimizer, named, method.param_group_options)
    assert [g["name"] for g in optimizer.param_groups] == before
    with pytest.raises(RecipeError, match="unknown keys"):
        split_param_groups(optimizer, named, lambda name, p: {"lr_scael": 2})
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    split_param_groups(optimizer, named, lambda name, p: {"fixed_lr": True} if p.ndim == 1 else {})
    with pytest.raises(RecipeError, match="LambdaLR"):
        pin_fixed_groups(scheduler, optimizer)


def test_the_report_plots_embedding_std_and_no_contrast_panels():
    from contrastive.evaluation.report.plots import TRAINING_PANELS, panels_for

    records = [{"step": s, "loss": 1.0 / s, "lr": 0.1, "views_per_second": 100.0, "alignment": 0.5, "uniformity": -2.0,
                "embedding_std": 0.08} for s in (1, 2)]
    panels = dict(panels_for(records, TRAINING_PANELS))
    assert ["embedding_std"] in panels.values()
    assert not any("positive_cosine" in keys or "contrastive_accuracy" in keys for keys in panels.values())


def test_list_methods_shows_the_four_with_their_family(capsys):
    from contrastive.cli import main

    assert main(["list", "methods"]) == 0
    listing = capsys.readouterr().out
    for name in ("byol", "simsiam", "barlow_twins", "vicreg"):
        line = next(line for line in listing.splitlines() if line.startswith(f"{name} "))
        assert "[family: negative-free (" in line, line
    simclr = next(line for line in listing.splitlines() if line.startswith("simclr "))
    assert "[family: contrastive (in-batch negatives)]" in simclr
