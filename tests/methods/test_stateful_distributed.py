"""The stateful methods (moco, moco_v3, nnclr) across processes are one process on the global batch.

With 2 and 4 gloo CPU processes, each holding 1/W of a global batch of 8 images, for two full
optimiser steps (the first with an empty queue, the second with a filled one):

* the loss (mean over ranks) and the parameter gradients averaged over ranks (what DDP applies)
  equal one process on the whole batch;
* after a plain SGD step on the averaged gradients and ``after_step``, the momentum encoder's
  parameters and the queue's ``keys``, ``pointer`` and ``filled`` of *every* rank equal the
  one-process ones (the second push wraps the ring buffer of 12 rows).

float64, rtol 0, atol 1e-6.  One spawn of 4 processes: a gloo group of 4, then ranks 0-1 as 2.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import contrastive
from contrastive import diagnostics
from contrastive.methods.base import Batch, Method, split_loss
from contrastive.methods.moco import MoCo
from contrastive.methods.moco_v3 import MoCoV3
from contrastive.methods.nnclr import NNCLR
from tests.helpers import run_gloo

GLOBAL_BATCH = 8
STEPS = 2
TOTAL_STEPS = 10
LR = 0.1
QUEUE = 12  # the second push (rows 8..11, then 0..3) wraps the ring buffer
CLOSE = {"rtol": 0, "atol": 1e-6}
CASES = ("moco", "moco_symmetric", "moco_v3", "nnclr")
WORLDS = (2, 4)


class ConvPool(nn.Module):
    """(N, 3, H, W) -> (N, 8): a 3x3 conv, tanh, then mean and max over the pixels (no BatchNorm)."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        h = torch.tanh(self.conv(x))
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)


def build(case: str) -> Method:
    """The same method (same seed) on every process and in the one-process reference."""
    torch.manual_seed(0)
    heads = contrastive.load_registries(autoload=False).heads
    backbone = ConvPool()
    head = heads.build("mlp", in_dim=backbone.num_features, hidden_dim=16, out_dim=8, batch_norm=False)
    if case in ("moco", "moco_symmetric"):
        method = MoCo(backbone, head, queue_size=QUEUE, momentum=0.5, temperature=0.2,
                      symmetric=case == "moco_symmetric")
    else:
        predictor = heads.build("mlp", in_dim=8, hidden_dim=16, out_dim=8, batch_norm=False)
        if case == "moco_v3":
            method = MoCoV3(backbone, head, predictor, temperature=0.2, momentum=0.9, final_momentum=1.0)
        else:
            method = NNCLR(backbone, head, predictor, queue_size=QUEUE, temperature=0.1)
    return method.double()


def global_batches() -> list[Batch]:
    """STEPS global batches of GLOBAL_BATCH 3x8x8 uint8 images."""
    g = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (STEPS * GLOBAL_BATCH, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 3, (STEPS * GLOBAL_BATCH,), generator=g)
    index = torch.arange(STEPS * GLOBAL_BATCH)
    return [Batch(images[s * GLOBAL_BATCH:(s + 1) * GLOBAL_BATCH], labels[s * GLOBAL_BATCH:(s + 1) * GLOBAL_BATCH],
                  index[s * GLOBAL_BATCH:(s + 1) * GLOBAL_BATCH]) for s in range(STEPS)]


def views_of(batch: Batch) -> list[torch.Tensor]:
    """Deterministic views: the images as float64 / 255, and the same flipped horizontally."""
    x = batch.images.to(torch.float64) / 255
    return [x, torch.flip(x, dims=[3])]


def state_of(method: Method) -> dict[str, torch.Tensor]:
    """The momentum encoder's parameters and the queue's buffers."""
    state = {name: p.detach().clone() for name, p in method.named_parameters()
             if name.startswith(("key_encoder.", "momentum_encoder."))}
    state.update({name: b.detach().clone() for name, b in method.named_buffers() if name.startswith("queue.")})
    return state


def train(case: str, batches: list[Batch], rank: int, world: int) -> list[dict[str, object]]:
    """STEPS steps of ``case`` on this rank's slice of each global batch: per step the mean loss
    over ranks, the rank-averaged gradients, and the state after SGD + ``after_step``."""
    method = build(case)
    method.train()
    n = GLOBAL_BATCH // world
    record = []
    for step, full in enumerate(batches, start=1):
        batch = full.slice(rank * n, (rank + 1) * n)
        method.zero_grad(set_to_none=True)
        outputs = method(views_of(batch), batch)
        with diagnostics.collecting():  # and the diagnostics, which must be the global batch's on every rank
            loss, logs = split_loss(method.loss(outputs, batch))
        loss.backward()
        loss = loss.detach().clone()
        params = dict(method.trainable_parameters())
        grads = {}
        for name, p in params.items():
            assert p.grad is not None, (case, name)
            grads[name] = p.grad.detach().clone()
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
        record.append({"loss": loss, "grads": grads, "state": state_of(method), "logs": logs})
    return record


def _every_case(rank: int, world: int, batches: list[Batch]) -> dict:
    return {case: train(case, batches, rank, world) for case in CASES}


def assert_step_matches(got: dict, want: dict, where: str, state: str) -> None:
    """One rank's record of a step (``loss``, ``logs``, ``grads`` and the dict under ``state``)
    equals the one-process record: tensors to ``CLOSE``, logged floats to 1e-9."""
    torch.testing.assert_close(got["loss"], want["loss"], **CLOSE, msg=lambda m: f"{where} loss: {m}")
    for name, value in want["logs"].items():
        assert got["logs"][name] == pytest.approx(value, abs=1e-9), f"{where} {name}"
    for part in ("grads", state):
        assert got[part].keys() == want[part].keys(), where
        for name, value in want[part].items():
            torch.testing.assert_close(got[part][name], value, **CLOSE,
                                       msg=lambda m, k=name, p=part: f"{where} {p} {k}: {m}")


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    batches = global_batches()
    return batches, run_gloo(_every_case, batches, worlds=WORLDS, tmp_path=tmp_path_factory.mktemp("gloo_stateful"))


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("case", CASES)
def test_two_steps_and_after_step_match_one_process(case, world, distributed_results):
    batches, by_world = distributed_results
    expected = train(case, batches, rank=0, world=1)
    results = [r[case] for r in by_world[world]]
    for step, want in enumerate(expected, start=1):
        assert float(want["loss"]) > 0 and all(g.abs().sum() > 0 for g in want["grads"].values()), (case, step)
        for rank, got in enumerate(r[step - 1] for r in results):
            where = f"{case}, world {world}, rank {rank}, step {step}"
            assert set(diagnostics.NAMES) <= set(want["logs"]) and got["logs"].keys() == want["logs"].keys(), where
            assert_step_matches(got, want, where, "state")
    # the second step really ran against a queue (and the momentum encoder really moved)
    state = expected[0]["state"]
    if "queue.filled" in state:
        pushed = GLOBAL_BATCH * (2 if case == "moco_symmetric" else 1)
        assert int(state["queue.filled"]) == min(pushed, QUEUE)
        assert int(expected[1]["state"]["queue.filled"]) == QUEUE
    reference = build(case)
    moved = [name for name, p in reference.named_parameters()
             if name in state and not torch.allclose(p, state[name], rtol=0, atol=1e-9)]
    assert moved or case == "nnclr", case  # nnclr has no momentum encoder
