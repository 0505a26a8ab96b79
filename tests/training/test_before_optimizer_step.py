"""``Method.before_optimizer_step``: the loop calls it once per step whose loss is finite, after
backward and before clipping and the optimiser step, and a gradient dropped there leaves its
parameter untouched (weight decay included) — how DINO keeps its last layer still."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

import contrastive
from contrastive import recipe as recipes
from contrastive.methods.simclr import SimCLR
from contrastive.training import fit
from tests.helpers import tiny_recipe_dict

FROZEN_STEPS = 3  # the head's gradients are dropped at steps 1..3
calls: list[tuple[str, int]] = []
initial_head: dict[str, torch.Tensor] = {}


class HeadFrozenFirst(SimCLR):
    """SimCLR whose head keeps still for the first FROZEN_STEPS steps; its loss is NaN at the 2nd call."""

    losses = 0

    def set_training_length(self, steps_per_epoch: int, total_steps: int) -> None:
        super().set_training_length(steps_per_epoch, total_steps)
        initial_head.update({k: p.detach().clone() for k, p in self.head.named_parameters()})

    def loss(self, outputs, batch):
        type(self).losses += 1
        loss = super().loss(outputs, batch)
        loss = loss[0] if isinstance(loss, tuple) else loss
        return loss * float("nan") if type(self).losses == 2 else loss

    def before_optimizer_step(self, step, total_steps):
        assert all(p.grad is not None for p in self.backbone.parameters())  # after backward
        calls.append(("before_optimizer_step", step))
        if step <= FROZEN_STEPS:
            for p in self.head.parameters():
                p.grad = None

    def after_step(self, outputs, batch, step, total_steps):
        calls.append(("after_step", step))


def head_at(out, step: int) -> dict[str, torch.Tensor]:
    state = load_file(str(out / "checkpoints" / f"step_{step:09d}" / "model.safetensors"))
    return {k: state[f"head.{k}"] for k in initial_head}  # the parameters (BatchNorm's statistics move)


def test_called_before_the_update_of_each_finite_step_and_a_dropped_gradient_leaves_the_parameter(tmp_path):
    registries = contrastive.load_registries(autoload=False)
    registries.methods.register("head_frozen_first", HeadFrozenFirst)
    out = tmp_path / "run"
    raw = tiny_recipe_dict(str(out), max_steps=5, skip_nonfinite=1, checkpoint_every_steps=1, keep_last=10,
                           grad_clip=1.0)
    raw["method"] = {"name": "head_frozen_first"}
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    calls.clear()
    initial_head.clear()
    HeadFrozenFirst.losses = 0
    results = fit(recipes.validate(raw, registries), registries)
    assert results["nonfinite_steps_skipped"] == 1
    # once per applied step (not the skipped step 2), each before that step's after_step
    assert calls == [(hook, step) for step in (1, 3, 4, 5) for hook in ("before_optimizer_step", "after_step")]
    # SGD with weight decay 1e-4 moves any parameter that has a gradient: the head did not move while frozen...
    for step in (1, 3):
        assert all(torch.equal(v, initial_head[k]) for k, v in head_at(out, step).items()), step
    # ...and moved at step 4, as the backbone did from the first step
    assert any(not torch.equal(v, head_at(out, 3)[k]) for k, v in head_at(out, 4).items())
