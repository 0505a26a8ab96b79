"""BYOL, SimSiam, Barlow Twins and VICReg across processes are one process on the global batch.

With 2 and 4 gloo CPU processes, each holding 1/W of a global batch of 8 images, for two full
optimiser steps:

* the loss (mean over ranks) and the parameter gradients averaged over ranks (what DDP applies)
  equal one process on the whole batch — for Barlow Twins and VICReg this holds only because the
  per-dimension statistics, the cross-correlation and the covariance are taken over the gathered
  global batch (a per-process version fails here: the loss depends on W);
* after a plain SGD step on the averaged gradients and ``after_step``, BYOL's momentum target
  on *every* rank equals the one-process one.

float64, rtol 0, atol 1e-6.  One spawn of 4 processes: a gloo group of 4, then ranks 0-1 as 2.
The heads have no BatchNorm (its statistics are per process without SyncBatchNorm, a separate
setting: ``trainer.sync_batchnorm``).
"""

from __future__ import annotations

import pytest
import torch

import contrastive
from contrastive import diagnostics
from contrastive.methods.barlow_twins import BarlowTwins
from contrastive.methods.base import Method, split_loss
from contrastive.methods.byol import BYOL
from contrastive.methods.simsiam import SimSiam
from contrastive.methods.vicreg import VICReg
from tests.helpers import run_gloo
from tests.methods.test_stateful_distributed import ConvPool, assert_step_matches, global_batches, views_of

GLOBAL_BATCH = 8
TOTAL_STEPS = 10
LR = 0.1
CASES = ("byol", "simsiam", "barlow_twins", "vicreg")
WORLDS = (2, 4)


def build(case: str) -> Method:
    """The same method (same seed) on every process and in the one-process reference."""
    torch.manual_seed(0)
    heads = contrastive.load_registries(autoload=False).heads
    backbone = ConvPool()
    head = heads.build("mlp", in_dim=backbone.num_features, hidden_dim=16, out_dim=8, batch_norm=False)
    if case in ("byol", "simsiam"):
        predictor = heads.build("mlp", in_dim=8, hidden_dim=4, out_dim=8, batch_norm=False)
        method = BYOL(backbone, head, predictor, momentum=0.9) if case == "byol" else SimSiam(backbone, head, predictor)
    elif case == "barlow_twins":
        method = BarlowTwins(backbone, head, lambda_offdiag=0.05)
    else:
        method = VICReg(backbone, head)
    return method.double()


def target_of(method: Method) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in method.named_parameters() if name.startswith("target.")}


def train(case: str, batches, rank: int, world: int) -> list[dict[str, object]]:
    """Two steps of ``case`` on this rank's slice of each global batch: the mean loss over ranks,
    the rank-averaged gradients, the diagnostics and the momentum target after SGD + ``after_step``."""
    method = build(case)
    method.train()
    n = GLOBAL_BATCH // world
    record = []
    for step, full in enumerate(batches, start=1):
        batch = full.slice(rank * n, (rank + 1) * n)
        method.zero_grad(set_to_none=True)
        outputs = method(views_of(batch), batch)
        with diagnostics.collecting():
            loss, logs = split_loss(method.loss(outputs, batch))
        loss.backward()
        loss = loss.detach().clone()
        params = dict(method.trainable_parameters())
        grads = {name: p.grad.detach().clone() for name, p in params.items()}
        if world > 1:
            torch.distributed.all_reduce(loss)
            loss /= world
            for grad in grads.values():
                torch.distributed.all_reduce(grad)
                grad /= world
        with torch.no_grad():
            for name, p in params.items():
                p.sub_(LR * grads[name])
        method.after_step({k: v.detach() for k, v in outputs.items()}, batch, step=step, total_steps=TOTAL_STEPS)
        record.append({"loss": loss, "grads": grads, "target": target_of(method), "logs": logs})
    return record


def _every_case(rank: int, world: int, batches) -> dict:
    return {case: train(case, batches, rank, world) for case in CASES}


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    batches = global_batches()
    return batches, run_gloo(_every_case, batches, worlds=WORLDS, tmp_path=tmp_path_factory.mktemp("gloo_negfree"))


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("case", CASES)
def test_loss_gradients_and_target_match_one_process(case, world, distributed_results):
    batches, by_world = distributed_results
    expected = train(case, batches, rank=0, world=1)
    for step, want in enumerate(expected, start=1):
        assert all(g.abs().sum() > 0 for g in want["grads"].values()), (case, step)
        for rank, got in enumerate(r[case][step - 1] for r in by_world[world]):
            where = f"{case}, world {world}, rank {rank}, step {step}"
            assert set(want["logs"]) == set(diagnostics.EMBEDDING_NAMES), where
            assert_step_matches(got, want, where, "target")
    if case == "byol":  # the target really moved, and differently from the online network
        reference = build(case)
        start = target_of(reference)
        assert any(not torch.allclose(start[k], v) for k, v in expected[-1]["target"].items())
