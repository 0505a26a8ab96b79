"""DINO (``contrastive.methods.dino``) and its head (``contrastive.components.heads.DINOHead``).

The loss equals lightly's ``DINOLoss`` and a written-out reference (the official code's loop over
the pairs) to 1e-6 in float64; the head computes what lightly's ``DINOProjectionHead`` computes
with the same weights; the teacher, centre, temperature warm-up and last-layer freeze follow
their schedules; bad settings are one-line errors.  Across processes:
tests/methods/test_dino_distributed.py; SIGKILL and resume: tests/reliability/test_kill_resume_dino.py.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from contrastive import diagnostics
from contrastive.components.heads import DINOHead, IdentityHead, MLPHead
from contrastive.errors import InvalidArgumentsError, RecipeError
from contrastive.methods.base import Batch, split_loss
from contrastive.methods.dino import DINO, dino_loss
from contrastive.methods.memory import momentum_schedule
from tests.methods.test_stateful_distributed import ConvPool

B, K = 6, 32


def logits(views: int, seed: int) -> torch.Tensor:
    return torch.randn(B, views, K, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


def reference_loss(student, teacher, center, tau_t, tau_s):
    """The official ``DINOLoss.forward``, written out: a loop over the (teacher i, student v ≠ i)
    pairs, softmax and log-softmax from exp and log, the mean over the samples of each pair."""
    total, pairs = 0.0, 0
    for i in range(teacher.shape[1]):
        t = (teacher[:, i] - center) / tau_t
        p = torch.exp(t - t.max(dim=1, keepdim=True).values)
        p = p / p.sum(dim=1, keepdim=True)
        for v in range(student.shape[1]):
            if v == i:
                continue
            s = student[:, v] / tau_s
            shifted = s - s.max(dim=1, keepdim=True).values
            log_q = shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))
            total = total + (-(p * log_q).sum(dim=1)).mean()
            pairs += 1
    return total / pairs


@pytest.mark.parametrize(("global_views", "views"), [(2, 12), (2, 2), (1, 3)])
def test_loss_equals_lightly_and_the_written_out_reference(global_views, views):
    DINOLoss = pytest.importorskip("lightly.loss").DINOLoss  # noqa: N806  (lightly: the bench extra)

    student, teacher = logits(views, 0), logits(global_views, 1)
    center = torch.randn(K, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    tau_t, tau_s = 0.04, 0.1
    ours = dino_loss(student, teacher, center, tau_t, tau_s)
    written = reference_loss(student, teacher, center, tau_t, tau_s)
    lightly = DINOLoss(output_dim=K, teacher_temp=tau_t, student_temp=tau_s).double()
    lightly.center = center.view(1, 1, K).clone()
    theirs = lightly([teacher[:, i] for i in range(global_views)], [student[:, v] for v in range(views)],
                     teacher_temp=tau_t)
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, written, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_the_centre_and_both_temperatures_change_the_loss():
    student, teacher, zero = logits(4, 0), logits(2, 1), torch.zeros(K, dtype=torch.float64)
    base = dino_loss(student, teacher, zero, 0.04, 0.1)
    for changed in (dino_loss(student, teacher, torch.linspace(-2, 2, K, dtype=torch.float64), 0.04, 0.1),
                    dino_loss(student, teacher, zero, 0.07, 0.1), dino_loss(student, teacher, zero, 0.04, 0.2)):
        assert abs(float(changed - base)) > 1e-3
    # a constant centre shifts every teacher logit alike: the softmax, and so the loss, stays
    torch.testing.assert_close(dino_loss(student, teacher, zero + 5.0, 0.04, 0.1), base, rtol=0, atol=1e-12)


# -- the head ------------------------------------------------------------------------------------
def test_head_computes_what_lightlys_dino_projection_head_computes():
    DINOProjectionHead = pytest.importorskip("lightly.models.modules").DINOProjectionHead  # noqa: N806

    torch.manual_seed(0)
    ours = DINOHead(in_dim=6, out_dim=10, hidden_dim=8, bottleneck_dim=4, norm_last_layer=False).double()
    with torch.no_grad():
        ours.last_layer.parametrizations.weight.original0.uniform_(0.5, 2.0)  # g off its initial 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # lightly's head uses the deprecated weight_norm
        theirs = DINOProjectionHead(6, 8, 4, 10, norm_last_layer=False).double()
    state = {k.replace("mlp.", "layers.").replace("parametrizations.weight.original0", "weight_g")
             .replace("parametrizations.weight.original1", "weight_v"): v for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state)
    x = torch.randn(5, 6, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-12)


def test_head_shapes_normalised_prototypes_and_which_parameters_train():
    torch.manual_seed(0)
    head = DINOHead(in_dim=6, out_dim=10, hidden_dim=8, bottleneck_dim=4)
    out = head(torch.randn(5, 6)).detach()
    assert out.shape == (5, 10) and head.out_dim == 10
    assert float(out.abs().max()) <= 1 + 1e-6  # unit bottleneck, unit prototypes: cosines
    trains = {name for name, p in head.named_parameters() if p.requires_grad}
    assert "last_layer.parametrizations.weight.original0" not in trains  # g stays 1 with norm_last_layer
    assert "last_layer.parametrizations.weight.original1" in trains
    free = DINOHead(in_dim=6, out_dim=10, hidden_dim=8, bottleneck_dim=4, norm_last_layer=False)
    assert free.last_layer.parametrizations.weight.original0.requires_grad
    wide = DINOHead(in_dim=64, out_dim=10, hidden_dim=256, bottleneck_dim=64)
    weights = [m for m in wide.mlp if isinstance(m, nn.Linear)]
    assert len(weights) == 3 and all(float(m.weight.detach().std()) == pytest.approx(0.02, rel=0.1) for m in weights)
    assert all(float(m.bias.detach().abs().max()) == 0 for m in weights)
    assert DINOHead(in_dim=6, out_dim=10, num_layers=1).mlp[0].weight.shape == (256, 6)
    assert any(isinstance(m, nn.BatchNorm1d) for m in DINOHead(in_dim=6, batch_norm=True, out_dim=4).mlp)
    with pytest.raises(InvalidArgumentsError, match="bottleneck_dim"):
        DINOHead(in_dim=6, bottleneck_dim=0)


# -- the method --------------------------------------------------------------------------------
def build(**args) -> DINO:
    torch.manual_seed(0)
    backbone = ConvPool()
    head = DINOHead(in_dim=backbone.num_features, out_dim=K, hidden_dim=16, bottleneck_dim=8)
    return DINO(backbone, head, **args).double()


def inputs(local: int = 2) -> tuple[list[torch.Tensor], Batch]:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(B, 3, 8, 8, generator=g, dtype=torch.float64)
    views = [x, x.flip(-1)] + [x[:, :, k:k + 4, k:k + 4] for k in range(local)]
    return views, Batch(images=torch.zeros(B, 3, 8, 8, dtype=torch.uint8), labels=torch.full((B,), -1),
                        index=torch.arange(B))


def test_forward_student_sees_every_view_teacher_the_global_ones():
    method = build()
    views, batch = inputs(local=3)
    out = method(views, batch)
    assert out["student"].shape == (B, 5, K) and out["teacher"].shape == (B, 2, K)
    assert out["student"].requires_grad and not out["teacher"].requires_grad
    torch.testing.assert_close(out["teacher"], out["student"][:, :2].detach())  # the teacher starts as a copy
    names = {name for name, _ in method.trainable_parameters()}
    assert names and not any(n.startswith("teacher.") for n in names)
    assert "head.last_layer.parametrizations.weight.original0" not in names


def test_the_teacher_has_no_dropout_or_stochastic_depth():
    from timm.layers import DropPath

    backbone = nn.Sequential(ConvPool(), nn.Dropout(0.3), DropPath(0.1))
    backbone.num_features = 8
    method = DINO(backbone, DINOHead(in_dim=8, out_dim=K, hidden_dim=16, bottleneck_dim=8))
    assert method.backbone[1].p == 0.3 and method.backbone[2].drop_prob == 0.1  # the student keeps them
    assert method.teacher.module[0][1].p == 0.0 and method.teacher.module[0][2].drop_prob == 0.0
    x = torch.rand(4, 3, 8, 8)
    method.train()
    with torch.no_grad():
        torch.testing.assert_close(method.teacher(x), method.teacher(x))  # deterministic in training mode


def test_loss_reads_the_centre_and_the_warmed_up_teacher_temperature():
    method = build(warmup_teacher_temperature=0.04, teacher_temperature=0.07, warmup_teacher_temperature_epochs=2)
    method.set_training_length(steps_per_epoch=10, total_steps=100)
    assert [method.teacher_temperature_at(k) for k in (0, 10, 20, 50)] == pytest.approx([0.04, 0.055, 0.07, 0.07])
    views, batch = inputs()
    out = method(views, batch)
    with torch.no_grad():
        method.center.copy_(torch.linspace(-1, 1, K))
        method.last_step.fill_(10)
    torch.testing.assert_close(method.loss(out, batch), dino_loss(out["student"], out["teacher"], method.center, 0.055, 0.1))
    assert build(warmup_teacher_temperature_epochs=0).teacher_temperature_at(0) == 0.07
    assert build().teacher_temperature_at(0) == 0.04  # the first step needs no training length
    with pytest.raises(RuntimeError, match="set_training_length"):
        build().teacher_temperature_at(3)


def test_after_step_moves_teacher_centre_and_step_counter():
    method = build(momentum=0.9, center_momentum=0.8)
    views, batch = inputs()
    student = {k: v.detach().clone() for k, v in method.student_encoder().named_parameters()}
    with torch.no_grad():
        for p in method.student_encoder().parameters():
            p.add_(0.5)
    out = {k: v.detach() for k, v in method(views, batch).items()}
    method.after_step(out, batch, step=1, total_steps=10)
    m = momentum_schedule(0, 10, 0.9, 1.0, "cosine")
    assert m == pytest.approx(0.9)  # the first step: the base momentum, as the official schedule
    for name, p in method.teacher.module.named_parameters():
        torch.testing.assert_close(p, m * student[name] + (1 - m) * (student[name] + 0.5), msg=name)
    first = 0.2 * out["teacher"].mean(dim=(0, 1))
    torch.testing.assert_close(method.center, first)
    assert int(method.last_step) == 1
    method.after_step(out, batch, step=2, total_steps=10)
    torch.testing.assert_close(method.center, 0.8 * first + 0.2 * out["teacher"].mean(dim=(0, 1)))
    assert int(method.last_step) == 2


def test_the_last_layer_gets_no_gradient_in_the_first_epoch():
    method = build(freeze_last_layer_epochs=1)
    method.set_training_length(steps_per_epoch=5, total_steps=20)
    views, batch = inputs()
    last = dict(method.head.last_layer.named_parameters())
    for step, frozen in ((1, True), (5, True), (6, False)):
        method.zero_grad(set_to_none=True)
        split_loss(method.loss(method(views, batch), batch))[0].backward()
        assert last["parametrizations.weight.original1"].grad is not None  # backward reaches it (DDP sees it used)
        method.before_optimizer_step(step, 20)
        assert (last["parametrizations.weight.original1"].grad is None) == frozen, step
        assert all(p.grad is not None for p in method.head.mlp.parameters())
    assert not build(freeze_last_layer_epochs=0).last_layer_frozen(1)
    with pytest.raises(RuntimeError, match="set_training_length"):
        build().last_layer_frozen(1)


def test_another_head_freezes_its_last_linear_or_is_refused():
    backbone = ConvPool()
    assert DINO(backbone, MLPHead(in_dim=8, hidden_dim=16, out_dim=K)).frozen_layer == "head.layers.3"
    with pytest.raises(InvalidArgumentsError, match=r"no last_layer and no nn\.Linear.*freeze_last_layer_epochs 0"):
        DINO(backbone, IdentityHead(in_dim=8))
    assert DINO(backbone, IdentityHead(in_dim=8), freeze_last_layer_epochs=0).frozen_layer is None


def test_view_groups_must_start_with_the_global_crops():
    method = build()
    for counts in ([2], [2, 10], [1, 1, 10], [2, 1]):
        method.check_views(counts)
    with pytest.raises(RecipeError, match="at least 2 views"):
        build(global_views=1).check_views([1])
    with pytest.raises(RecipeError, match=r"groups of \[3, 2\] end after views \[3, 5\].*global_views to one of \[3\]"):
        method.check_views([3, 2])
    with pytest.raises(RecipeError, match="global_views"):
        build(global_views=3).check_views([2])


@pytest.mark.parametrize(("args", "message"), [
    ({"teacher_temperature": 0.0}, "teacher_temperature must be > 0, got 0.0"),
    ({"center_momentum": 1.5}, "center_momentum must be between 0 and 1"),
    ({"global_views": 0}, "global_views must be at least 1"),
    ({"momentum": 0.999, "final_momentum": 0.99}, r"at most final_momentum.*--method.args.final_momentum 1.0"),
])
def test_bad_arguments_are_one_line_errors(args, message):
    with pytest.raises(InvalidArgumentsError, match=message) as error:
        build(**args)
    assert "\n" not in str(error.value)


def test_diagnostics_are_the_collapse_signals():
    method = build()
    views, batch = inputs()
    out = method(views, batch)
    with diagnostics.collecting():
        loss, logs = split_loss(method.loss(out, batch))
    assert {"alignment", "uniformity", "embedding_std", "teacher_entropy", "student_entropy",
            "teacher_student_kl"} <= set(logs)
    assert 0 <= logs["teacher_entropy"] <= 1 and 0 <= logs["student_entropy"] <= 1
    assert logs["teacher_student_kl"] >= -1e-9
    uniform = {"student": out["student"], "teacher": torch.zeros_like(out["teacher"])}  # centring alone: collapse to uniform
    with diagnostics.collecting():
        logs = split_loss(method.loss(uniform, batch))[1]
    assert logs["teacher_entropy"] == pytest.approx(1.0)
    assert logs["teacher_student_kl"] == pytest.approx(float(method.loss(uniform, batch).detach()) - math.log(K))
