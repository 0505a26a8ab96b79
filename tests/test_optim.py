"""Optimizers (LARS / SGD / AdamW param groups, lr scaling) and per-iteration schedulers."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from contrastive.components import optim
from contrastive.errors import InvalidArgumentsError
from contrastive.registry import Registries


@pytest.fixture(scope="module")
def regs():
    registries = Registries()
    optim.contrastive_register(registries)
    return registries


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def _named(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _loss(model):
    torch.manual_seed(1)
    return model(torch.randn(8, 4)).pow(2).sum()


def _groups(optimizer):
    return {g["name"]: g for g in optimizer.param_groups}


def test_scaled_lr_rules():
    assert optim.scaled_lr(0.3, 4096, "linear") == pytest.approx(4.8)
    assert optim.scaled_lr(0.075, 4096, "sqrt") == pytest.approx(4.8)
    assert optim.scaled_lr(0.3, 4096, "none") == 0.3
    with pytest.raises(InvalidArgumentsError, match="lr_scaling"):
        optim.scaled_lr(0.3, 256, "cubic")


def test_lars_groups_and_scaled_lr(regs):
    model = _model()
    opt = regs.optimizers.build("lars", named_parameters=_named(model), batch_size=4096)
    groups = _groups(opt)
    assert set(groups) == {"decay", "no_decay"}
    assert groups["decay"]["weight_decay"] == 1e-6 and groups["decay"]["always_adapt"] is True
    assert groups["no_decay"]["weight_decay"] == 0 and groups["no_decay"]["always_adapt"] is False
    assert all(p.ndim == 2 for p in groups["decay"]["params"])
    assert all(p.ndim == 1 for p in groups["no_decay"]["params"])
    assert len(groups["decay"]["params"]) + len(groups["no_decay"]["params"]) == len(list(model.parameters()))
    assert all(g["lr"] == pytest.approx(4.8) for g in opt.param_groups)
    sqrt = regs.optimizers.build("lars", named_parameters=_named(model), batch_size=4096, lr=0.075, lr_scaling="sqrt")
    assert sqrt.param_groups[0]["lr"] == pytest.approx(4.8)


def test_lars_excluded_params_get_plain_momentum_sgd(regs):
    model = _model()
    opt = regs.optimizers.build(
        "lars", named_parameters=_named(model), batch_size=256, lr=0.1, weight_decay=1e-2, momentum=0.9
    )
    excluded = {n: p for n, p in model.named_parameters() if p.ndim <= 1}
    expected = {n: p.detach().clone() for n, p in excluded.items()}
    buffers: dict[str, torch.Tensor] = {}
    weight_before = model[0].weight.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        _loss(model).backward()
        weight_grad = model[0].weight.grad.detach().clone()
        for n, p in excluded.items():  # momentum SGD by hand: no weight decay, no trust ratio
            g = p.grad.detach()
            buffers[n] = g.clone() if n not in buffers else buffers[n] * 0.9 + g
            expected[n] -= 0.1 * buffers[n]
        opt.step()
    for n, p in excluded.items():
        torch.testing.assert_close(p.detach(), expected[n], msg=n)
    # a decayed weight is adapted: its update is far smaller than plain SGD's (trust ratio ~1e-3)
    assert weight_grad.abs().sum() > 0
    assert (model[0].weight.detach() - weight_before).norm() < 0.01 * 0.1 * weight_grad.norm()


def test_lars_first_step_trust_ratio(regs):
    model = _model()
    opt = regs.optimizers.build(
        "lars", named_parameters=_named(model), batch_size=256, lr=1.0, weight_decay=0.0, trust_coefficient=0.001
    )
    _loss(model).backward()
    w, g = model[0].weight.detach().clone(), model[0].weight.grad.detach().clone()
    opt.step()
    trust = 0.001 * w.norm() / (g.norm() + 1e-8)  # adapted even with weight_decay=0 (always_adapt)
    torch.testing.assert_close(model[0].weight.detach(), w - trust * g)


def test_lars_without_exclusion(regs):
    opt = regs.optimizers.build("lars", named_parameters=_named(_model()), batch_size=256, exclude_bias_and_norm=False)
    assert [g["name"] for g in opt.param_groups] == ["decay"]


def test_sgd_and_adamw_groups(regs):
    model = _model()
    sgd = regs.optimizers.build("sgd", named_parameters=_named(model), batch_size=512, nesterov=True)
    groups = _groups(sgd)
    assert isinstance(sgd, torch.optim.SGD)
    assert groups["decay"]["weight_decay"] == 5e-4 and groups["no_decay"]["weight_decay"] == 0
    assert groups["decay"]["lr"] == pytest.approx(0.2) and groups["decay"]["nesterov"] is True
    adamw = regs.optimizers.build("adamw", named_parameters=_named(model), batch_size=512, betas=[0.9, 0.95])
    groups = _groups(adamw)
    assert isinstance(adamw, torch.optim.AdamW)
    assert groups["decay"]["weight_decay"] == 0.05 and groups["no_decay"]["weight_decay"] == 0
    assert groups["decay"]["lr"] == 1e-3 and groups["decay"]["betas"] == (0.9, 0.95)


def test_optimizer_bad_args(regs):
    with pytest.raises(InvalidArgumentsError, match=r"lars.*lr_scaling"):
        regs.optimizers.build("lars", named_parameters=_named(_model()), batch_size=256, lr_scaling="cubic")
    with pytest.raises(InvalidArgumentsError, match=r"sgd.*momentum"):
        regs.optimizers.build("sgd", named_parameters=_named(_model()), batch_size=256, momentum=1.5)
    with pytest.raises(InvalidArgumentsError, match="lr"):
        regs.optimizers.build("adamw", named_parameters=_named(_model()), batch_size=256, lr=-1.0)


def _lrs(scheduler, optimizer, steps):
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def _sgd(lr=1.0):
    return torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=lr)


def test_warmup_cosine_values(regs):
    opt = _sgd(lr=0.8)
    sched = regs.schedulers.build(
        "warmup_cosine", optimizer=opt, steps_per_epoch=10, total_steps=100, warmup_epochs=1, min_lr_ratio=0.1
    )
    lrs = _lrs(sched, opt, 100)
    assert lrs[0] == pytest.approx(0.08)  # 1/10 of the peak at step 0
    assert lrs[9] == pytest.approx(0.8)  # end of warm-up: the peak
    assert max(lrs) == pytest.approx(0.8)
    middle = 9 + 45  # halfway through the cosine (steps 9..99)
    assert lrs[middle] == pytest.approx(0.08 + (0.8 - 0.08) * 0.5)
    assert lrs[99] == pytest.approx(0.08)  # last step: min_lr_ratio × peak
    assert all(a <= b for a, b in zip(lrs[:9], lrs[1:10], strict=True))
    assert all(a >= b for a, b in zip(lrs[9:99], lrs[10:], strict=True))


def test_warmup_cosine_warmup_steps_and_clamp(regs):
    opt = _sgd()
    sched = regs.schedulers.build("warmup_cosine", optimizer=opt, steps_per_epoch=10, total_steps=5, warmup_steps=50)
    lrs = _lrs(sched, opt, 5)
    assert lrs == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    opt = _sgd()
    sched = regs.schedulers.build("warmup_cosine", optimizer=opt, steps_per_epoch=10, total_steps=11, warmup_epochs=0)
    lrs = _lrs(sched, opt, 11)
    assert lrs[0] == pytest.approx(1.0) and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(0.0, abs=1e-12)


def test_warmup_cosine_state_dict_round_trip(regs):
    opt = _sgd(lr=0.5)
    sched = regs.schedulers.build("warmup_cosine", optimizer=opt, steps_per_epoch=4, total_steps=40, warmup_epochs=2)
    _lrs(sched, opt, 13)
    buffer = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    opt2 = _sgd(lr=0.5)
    sched2 = regs.schedulers.build("warmup_cosine", optimizer=opt2, steps_per_epoch=4, total_steps=40, warmup_epochs=2)
    opt2.load_state_dict(saved["optimizer"])
    sched2.load_state_dict(saved["scheduler"])
    assert _lrs(sched2, opt2, 27) == pytest.approx(_lrs(sched, opt, 27))


def test_constant(regs):
    opt = _sgd(lr=0.4)
    sched = regs.schedulers.build("constant", optimizer=opt, steps_per_epoch=2, total_steps=10, warmup_epochs=2)
    assert _lrs(sched, opt, 8) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4, 0.4])
    opt = _sgd(lr=0.4)
    sched = regs.schedulers.build("constant", optimizer=opt, steps_per_epoch=2, total_steps=10)
    assert _lrs(sched, opt, 3) == pytest.approx([0.4] * 3)


def test_scheduler_bad_args(regs):
    with pytest.raises(InvalidArgumentsError, match="min_lr_ratio"):
        regs.schedulers.build("warmup_cosine", optimizer=_sgd(), steps_per_epoch=1, total_steps=10, min_lr_ratio=2.0)
    with pytest.raises(InvalidArgumentsError, match="warmup_epochs"):
        regs.schedulers.build("constant", optimizer=_sgd(), steps_per_epoch=1, total_steps=10, warmup_epochs=-1)
    assert math.isfinite(optim.WarmupCosine(0, 1)(0))
