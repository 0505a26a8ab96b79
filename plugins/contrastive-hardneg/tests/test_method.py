"""Unit tests of the ``hardneg_simclr`` method: the method contract, the loss and the β warm-up.

They need only contrastive installed, not the plugin (the hook is called on a fresh Registries).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from contrastive import Batch, Method, diagnostics
from contrastive.components.losses import NTXentLoss
from contrastive.errors import InvalidArgumentsError, RecipeError
from contrastive.recipe import method_parts
from contrastive.registry import Registries
from contrastive.training.step import grad_cache_step
from torch import nn

from contrastive_hardneg import HardNegativeLoss, HardNegSimCLR, plugin


class TinyNet(nn.Module):
    """``(N, 3, H, W)`` -> ``(N, 8)``: a conv and mean pooling (no batch statistics)."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, self.num_features, 3, padding=1)

    def forward(self, x):
        return self.conv(x).relu().mean(dim=(2, 3))


def make_method(**args) -> HardNegSimCLR:
    torch.manual_seed(0)
    return HardNegSimCLR(backbone=TinyNet(), head=nn.Linear(8, 6), **args)


def make_batch(n: int = 8) -> tuple[list[torch.Tensor], Batch]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=generator)
    batch = Batch(images=images, labels=torch.full((n,), -1), index=torch.arange(n))
    base = images.float() / 255
    views = [base, (base + 0.1 * torch.rand(base.shape, generator=generator)).clamp(0, 1)]
    return views, batch


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_is_a_method_with_injected_parts_and_no_loss_part():
    method = make_method()
    assert isinstance(method, Method)
    assert method.views == 2 and not method.requires_labels
    assert method_parts(HardNegSimCLR) == {"backbone": True, "head": True}  # builds its own loss
    assert isinstance(method.criterion, HardNegativeLoss)


def test_forward_shape_and_purity():
    method = make_method()
    method.train()
    views, batch = make_batch()
    before = snapshot(method)
    first = method(views, batch)
    second = method(views, batch)
    assert set(first) == {"z"} and first["z"].shape == (8, 2, 6)  # (B, V, D): samples along dim 0
    assert first["z"].requires_grad
    torch.testing.assert_close(first["z"][:, 1], method.encode(views[1]))
    assert torch.equal(first["z"], second["z"])  # replayable (GradCache runs forward twice)
    after = snapshot(method)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "forward wrote state"


def test_accepts_exactly_two_views():
    method = make_method()
    method.check_views([2])
    method.check_views([1, 1])
    for counts in ([3], [2, 6], [1]):
        with pytest.raises(RecipeError, match="2 views"):
            method.check_views(counts)


def test_loss_is_finite_with_diagnostics_and_reads_no_state():
    method = make_method(beta=1.0, warmup_fraction=0.0)
    views, batch = make_batch()
    outputs = method(views, batch)
    before = snapshot(method)
    assert set(method.loss(outputs, batch)[1]) == {"beta"}  # a step the loop does not record
    with diagnostics.collecting():
        loss, logs = method.loss(outputs, batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(logs) == {"beta", *diagnostics.NAMES} and all(isinstance(v, float) for v in logs.values())
    assert logs["beta"] == 1.0
    z = outputs["z"].detach()
    assert logs["positive_cosine"] == pytest.approx(F.cosine_similarity(z[:, 0], z[:, 1]).mean().item(), abs=1e-6)
    expected = HardNegativeLoss(temperature=0.5, beta=1.0, tau_plus=0.1)(z[:, 0], z[:, 1])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    grads = [p.grad for p in method.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    after = snapshot(method)
    assert all(torch.equal(before[k], after[k]) for k in before), "loss wrote state"


def test_without_hardness_or_debiasing_is_simclr():
    method = make_method(temperature=0.2, beta=0.0, tau_plus=0.0)
    views, batch = make_batch()
    z = method(views, batch)["z"]
    loss, _ = method.loss({"z": z}, batch)
    assert loss.item() == pytest.approx(NTXentLoss(temperature=0.2)(z[:, 0], z[:, 1]).item(), rel=1e-6)


def test_after_step_counts_and_anneals_beta_linearly():
    method = make_method(beta=0.8, warmup_fraction=0.25)
    views, batch = make_batch()
    outputs = {k: v.detach() for k, v in method(views, batch).items()}
    assert method.current_beta() == 0.0  # before the first step: uniform weights
    total = 20  # warm-up: the first 5 steps
    seen = []
    for step in range(1, total + 1):
        method.after_step(outputs, batch, step, total)
        seen.append(method.current_beta())
        assert method.steps_seen.dtype == torch.int64 and int(method.steps_seen) == step
    assert seen[:5] == pytest.approx([0.16, 0.32, 0.48, 0.64, 0.8])
    assert seen[5:] == [0.8] * 15
    assert method.loss(outputs, batch)[1]["beta"] == 0.8


def test_after_step_counts_applied_steps_only():
    method = make_method(beta=1.0, warmup_fraction=0.5)
    views, batch = make_batch()
    outputs = method(views, batch)
    for step in (1, 2, 4):  # step 3 was skipped (non-finite loss): the loop did not call after_step
        method.after_step(outputs, batch, step, 10)
    assert int(method.steps_seen) == 3
    assert method.current_beta() == pytest.approx(4 / 5)  # the schedule follows step / total_steps


def test_no_warmup_uses_the_target_from_the_start():
    method = make_method(beta=0.5, warmup_fraction=0.0)
    assert method.current_beta() == 0.5


def test_schedule_is_in_the_state_dict_and_restored_exactly():
    method = make_method(beta=1.0, warmup_fraction=0.3)
    views, batch = make_batch()
    outputs = method(views, batch)
    for step in range(1, 8):
        method.after_step(outputs, batch, step, 70)
    state = method.state_dict()
    assert {"steps_seen", "schedule_step", "schedule_total"} <= set(state)
    resumed = make_method(beta=1.0, warmup_fraction=0.3)
    assert resumed.current_beta() == 0.0
    resumed.load_state_dict(state)
    assert int(resumed.steps_seen) == 7
    assert resumed.current_beta() == method.current_beta() == pytest.approx(1 / 3)
    assert torch.equal(resumed.loss(outputs, batch)[0], method.loss(outputs, batch)[0])


def test_gradcache_chunks_give_the_whole_batch_gradient():
    """trainer.accumulate: forward replayed per chunk, loss over every chunk's outputs at once."""
    views, batch = make_batch(8)

    def gradients(chunks: int) -> list[torch.Tensor]:
        method = make_method(beta=1.0, warmup_fraction=0.0)
        size = 8 // chunks

        def forward(k):
            part = batch.slice(k * size, (k + 1) * size)
            return method([v[k * size : (k + 1) * size] for v in views], part)

        grad_cache_step(forward, lambda outputs: method.loss(outputs, batch), chunks)
        return [p.grad.clone() for p in method.parameters()]

    for whole, split in zip(gradients(1), gradients(2), strict=True):
        torch.testing.assert_close(split, whole, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "args", [{"warmup_fraction": -0.1}, {"warmup_fraction": 1.5}, {"beta": -1.0}, {"temperature": 0.0}], ids=str
)
def test_invalid_arguments(args):
    with pytest.raises(InvalidArgumentsError):
        make_method(**args)


def test_hook_registers_the_method():
    registries = Registries()
    plugin.contrastive_register(registries=registries)
    assert "hardneg_simclr" in registries.methods.names()
    method = registries.methods.build("hardneg_simclr", backbone=TinyNet(), head=nn.Linear(8, 4), beta=0.5)
    assert isinstance(method, HardNegSimCLR) and method.target_beta == 0.5
    registries.methods.check_args("hardneg_simclr", {"warmup_fraction": 0.2}, injected=("backbone", "head"))
    with pytest.raises(InvalidArgumentsError, match="did you mean 'warmup_fraction'"):
        registries.methods.check_args("hardneg_simclr", {"warmup_fractoin": 0.2}, injected=("backbone", "head"))
