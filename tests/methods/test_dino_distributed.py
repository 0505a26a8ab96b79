"""DINO across processes is one process on the global batch.

With 2 and 4 gloo CPU processes, each holding 1/W of a global batch of 8 images (2 global views
and 2 local views of half the side each), for two full optimiser steps:

* the loss (mean over ranks), the parameter gradients averaged over ranks (what DDP applies) and
  the diagnostics equal one process on the whole batch;
* after ``before_optimizer_step`` (the last layer frozen at step 1, free at step 2), a plain SGD
  step on the averaged gradients and ``after_step``, the teacher's parameters, the centre and the
  step counter of *every* rank equal the one-process ones.

The second step is the one that tells: its loss centres the teacher with the centre the first
``after_step`` made, which is the global batch's mean only because that mean is all-reduced over
the processes (without the all-reduce each rank keeps its shard's mean and the second step's loss,
gradients and centre differ from one process, and between ranks).  The teacher temperature warms
up over the steps (read from the step counter).

And a real ``contrastive fit`` of two DDP processes through the end of the frozen epoch: DDP
accepts the freeze (every parameter gets its gradient; the loop drops the last layer's before the
optimiser), and the last layer keeps still while frozen and moves after.

float64, rtol 0, atol 1e-6.  One spawn of 4 processes: a gloo group of 4, then ranks 0-1 as 2.
"""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file

from contrastive import diagnostics
from contrastive.components.heads import DINOHead
from contrastive.methods.base import Batch, split_loss
from contrastive.methods.dino import DINO
from tests.helpers import run_gloo, run_ranks
from tests.methods.test_stateful_distributed import ConvPool, assert_step_matches, global_batches, views_of

GLOBAL_BATCH = 8
TOTAL_STEPS = 10
STEPS_PER_EPOCH = 1  # the last layer is frozen at step 1 only; the temperature warms up over 4 steps
LR = 0.1
WORLDS = (2, 4)
FROZEN = "head.last_layer.parametrizations.weight.original1"


def build() -> DINO:
    """The same method (same seed) on every process and in the one-process reference."""
    torch.manual_seed(0)
    backbone = ConvPool()
    head = DINOHead(in_dim=backbone.num_features, out_dim=16, hidden_dim=16, bottleneck_dim=8)
    method = DINO(backbone, head, momentum=0.9, center_momentum=0.5, warmup_teacher_temperature_epochs=4,
                  freeze_last_layer_epochs=1).double()
    method.set_training_length(STEPS_PER_EPOCH, TOTAL_STEPS)
    return method


def multicrop(batch: Batch) -> list[torch.Tensor]:
    """2 global views (the images and their mirror image) and 2 local 4x4 crops of them."""
    full, mirror = views_of(batch)
    return [full, mirror, full[:, :, :4, :4], mirror[:, :, 2:6, 3:7]]


def state_of(method: DINO) -> dict[str, torch.Tensor]:
    state = {name: p.detach().clone() for name, p in method.named_parameters() if name.startswith("teacher.")}
    state.update(center=method.center.clone(), last_step=method.last_step.clone())
    return state


def train(rank: int, world: int, batches: list[Batch]) -> list[dict[str, object]]:
    """Two steps on this rank's slice of each global batch: the mean loss over ranks, the
    rank-averaged gradients after before_optimizer_step, the diagnostics, and the teacher,
    centre and step counter after SGD + after_step."""
    method = build()
    method.train()
    n = GLOBAL_BATCH // world
    record = []
    for step, full in enumerate(batches, start=1):
        batch = full.slice(rank * n, (rank + 1) * n)
        method.zero_grad(set_to_none=True)
        outputs = method(multicrop(batch), batch)
        with diagnostics.collecting():
            loss, logs = split_loss(method.loss(outputs, batch))
        loss.backward()
        loss = loss.detach().clone()
        if world > 1:
            torch.distributed.all_reduce(loss)
            loss /= world
            for _, p in method.trainable_parameters():
                torch.distributed.all_reduce(p.grad)
                p.grad /= world
        method.before_optimizer_step(step, TOTAL_STEPS)
        grads = {name: p.grad.detach().clone() for name, p in method.trainable_parameters() if p.grad is not None}
        with torch.no_grad():
            for _, p in method.trainable_parameters():
                if p.grad is not None:
                    p.sub_(LR * p.grad)
        method.after_step({k: v.detach() for k, v in outputs.items()}, batch, step=step, total_steps=TOTAL_STEPS)
        record.append({"loss": loss, "grads": grads, "state": state_of(method), "logs": logs})
    return record


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    batches = global_batches()
    return batches, run_gloo(train, batches, worlds=WORLDS, tmp_path=tmp_path_factory.mktemp("gloo_dino"))


@pytest.mark.parametrize("world", WORLDS)
def test_loss_gradients_centre_and_teacher_match_one_process(world, distributed_results):
    batches, by_world = distributed_results
    expected = train(0, 1, batches)
    assert FROZEN not in expected[0]["grads"] and FROZEN in expected[1]["grads"]  # frozen at step 1 only
    assert float(expected[1]["state"]["center"].abs().max()) > 0
    for step, want in enumerate(expected, start=1):
        assert all(g.abs().sum() > 0 for g in want["grads"].values()), step
        for rank, got in enumerate(by_world[world][r][step - 1] for r in range(world)):
            where = f"dino, world {world}, rank {rank}, step {step}"
            assert {"teacher_entropy", "student_entropy", "teacher_student_kl"} <= set(want["logs"]), where
            assert_step_matches(got, want, where, "state")


def test_ddp_fit_keeps_the_last_layer_still_while_frozen(tmp_path):
    """Two real DDP processes (gloo) through the end of the frozen epoch: 90 digits in global
    steps of 16, 5 steps an epoch, the last layer frozen for 0.6 epochs (steps 1-3) of 5 steps."""
    from tests.reliability.conftest import kill_recipe

    recipe = kill_recipe(tmp_path / "run", max_epochs=1, checkpoint_every_steps=1, global_batch_size=16)
    del recipe["trainer"]["batch_size"], recipe["loss"]
    recipe["method"] = {"name": "dino", "args": {"freeze_last_layer_epochs": 0.6, "warmup_teacher_temperature_epochs": 1}}
    recipe["head"] = {"name": "dino", "args": {"hidden_dim": 32, "bottleneck_dim": 16, "out_dim": 64}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    code, output = run_ranks(["fit", "--recipe", str(path)], world=2)
    assert code == 0, output[-3000:]
    states = [load_file(str(tmp_path / "run" / "checkpoints" / f"step_{s:09d}" / "model.safetensors")) for s in (1, 3, 4)]
    assert torch.equal(states[0][FROZEN], states[1][FROZEN])  # frozen through step 3
    assert not torch.equal(states[1][FROZEN], states[2][FROZEN])  # moving at step 4
    assert not torch.equal(states[0]["head.mlp.0.weight"], states[1]["head.mlp.0.weight"])  # the rest trained
    assert float(states[2]["center"].abs().max()) > 0 and int(states[2]["last_step"]) == 4
