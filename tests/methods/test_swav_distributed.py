"""SwAV across processes is one process on the global batch: Sinkhorn-Knopp over every process.

With 2 and 4 gloo CPU processes, each holding 1/W of a global batch of 8 images (2 global 8 px
views and 2 local 4 px views each), for three full optimiser steps:

* the loss (mean over ranks), the parameter gradients averaged over ranks (what DDP applies) and
  the diagnostics equal one process on the whole batch — the codes are those of the global
  Sinkhorn-Knopp problem only because its prototype sums are all-reduced in every iteration;
* after a plain SGD step on the averaged gradients and ``after_step``, the prototypes, both
  queues (``keys``, ``pointer``, ``filled``) and ``last_step`` of *every* rank equal the
  one-process ones.

Step 1 runs with the prototypes frozen (they must not move) and the queues empty; its push of 8
rows fills the 6-row queues, so steps 2 and 3 use them, each process scoring its share of the
queue's rows (2, 2, 1, 1 of 6 on 4 processes: uneven shares).  float64, rtol 0, atol 1e-6.  One
spawn of 4 processes: a gloo group of 4, then ranks 0-1 as 2.  Sinkhorn-Knopp alone, on uneven
rows per process, is checked against one process in the same spawn.
"""

from __future__ import annotations

import pytest
import torch

import contrastive
from contrastive import diagnostics
from contrastive.methods.base import Batch, split_loss
from contrastive.methods.sinkhorn import sinkhorn_knopp
from contrastive.methods.swav import SwAV
from tests.helpers import run_gloo
from tests.methods.test_stateful_distributed import ConvPool, assert_step_matches

GLOBAL_BATCH = 8
STEPS = 3
STEPS_PER_EPOCH = 1  # freeze_prototypes_epochs 1: the prototypes are frozen for step 1
TOTAL_STEPS = 10
LR = 0.1
QUEUE = 6
WORLDS = (2, 4)
UNEVEN = (13, 7)  # Sinkhorn-Knopp alone: 13 rows, K = 7, split unevenly over the processes


def build() -> SwAV:
    """The same method (same seed) on every process and in the one-process reference."""
    torch.manual_seed(0)
    heads = contrastive.load_registries(autoload=False).heads
    backbone = ConvPool()
    head = heads.build("mlp", in_dim=backbone.num_features, hidden_dim=16, out_dim=8, batch_norm=False)
    method = SwAV(backbone, head, prototypes=5, temperature=0.1, epsilon=0.05, freeze_prototypes_epochs=1,
                  queue_size=QUEUE, queue_start_epochs=0).double()
    method.set_training_length(STEPS_PER_EPOCH, TOTAL_STEPS)
    return method


def global_batches() -> list[Batch]:
    g = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (STEPS * GLOBAL_BATCH, 3, 8, 8), dtype=torch.uint8, generator=g)
    index = torch.arange(STEPS * GLOBAL_BATCH)
    return [Batch(images[s * GLOBAL_BATCH:(s + 1) * GLOBAL_BATCH], torch.full((GLOBAL_BATCH,), -1),
                  index[s * GLOBAL_BATCH:(s + 1) * GLOBAL_BATCH]) for s in range(STEPS)]


def multicrop_views(batch: Batch) -> list[torch.Tensor]:
    """Per-sample views (slicing the batch commutes with them): the images and their mirror at
    8 px, then the top-left and bottom-right 4 px corners."""
    x = batch.images.to(torch.float64) / 255
    return [x, torch.flip(x, dims=[3]), x[..., :4, :4], x[..., 4:, 4:]]


def state_of(method: SwAV) -> dict[str, torch.Tensor]:
    state = {"prototypes.weight": method.prototypes.weight.detach().clone(), "last_step": method.last_step.clone()}
    state.update({name: b.detach().clone() for name, b in method.named_buffers() if name.startswith("queues.")})
    return state


def train(batches: list[Batch], rank: int, world: int) -> list[dict[str, object]]:
    """STEPS steps on this rank's slice of each global batch: per step the mean loss over ranks,
    the rank-averaged gradients, the diagnostics and the state after SGD + ``after_step``."""
    method = build().train()
    n = GLOBAL_BATCH // world
    record = []
    for step, full in enumerate(batches, start=1):
        batch = full.slice(rank * n, (rank + 1) * n)
        method.zero_grad(set_to_none=True)
        outputs = method(multicrop_views(batch), batch)
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
        record.append({"loss": loss, "grads": grads, "state": state_of(method), "logs": logs})
    return record


def uneven_rows(rank: int, world: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    scores = torch.rand(*UNEVEN, generator=g, dtype=torch.float64) * 2 - 1
    return torch.tensor_split(scores, world)[rank]


def _every_case(rank: int, world: int, batches: list[Batch]) -> dict:
    return {"train": train(batches, rank, world), "sinkhorn": sinkhorn_knopp(uneven_rows(rank, world), 0.05, 3)}


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    batches = global_batches()
    return batches, run_gloo(_every_case, batches, worlds=WORLDS, tmp_path=tmp_path_factory.mktemp("gloo_swav"))


@pytest.mark.parametrize("world", WORLDS)
def test_loss_gradients_prototypes_and_queues_match_one_process(world, distributed_results):
    batches, by_world = distributed_results
    expected = train(batches, rank=0, world=1)
    for step, want in enumerate(expected, start=1):
        assert all(g.abs().sum() > 0 for name, g in want["grads"].items() if step > 1 or name != "prototypes.weight")
        for rank, got in enumerate(r["train"][step - 1] for r in by_world[world]):
            where = f"swav, world {world}, rank {rank}, step {step}"
            assert {"prototype_usage", "code_entropy", "queue_fill", *diagnostics.EMBEDDING_NAMES} == set(got["logs"])
            assert_step_matches(got, want, where, "state")
    # what the three steps went through: frozen prototypes at step 1, moving after; the queues full from step 2
    start = build().prototypes.weight.detach()
    first, second = expected[0], expected[1]
    assert torch.equal(first["grads"]["prototypes.weight"], torch.zeros_like(start))
    torch.testing.assert_close(first["state"]["prototypes.weight"], torch.nn.functional.normalize(start, dim=1),
                               rtol=0, atol=1e-12)
    assert second["grads"]["prototypes.weight"].abs().max() > 0
    assert (second["state"]["prototypes.weight"] - first["state"]["prototypes.weight"]).abs().max() > 1e-6
    assert first["logs"]["queue_fill"] == 0 and second["logs"]["queue_fill"] == 1  # read before the step's push
    assert [int(s["state"]["queues.0.pointer"]) for s in expected] == [8 % QUEUE, 16 % QUEUE, 24 % QUEUE]


@pytest.mark.parametrize("world", WORLDS)
def test_sinkhorn_over_uneven_rows_per_process_is_the_one_process_problem(world, distributed_results):
    _, by_world = distributed_results
    got = torch.cat([r["sinkhorn"] for r in by_world[world]])
    assert [len(r["sinkhorn"]) for r in by_world[world]] == [len(p) for p in torch.tensor_split(torch.empty(13), world)]
    torch.testing.assert_close(got, sinkhorn_knopp(uneven_rows(0, 1), 0.05, 3), rtol=0, atol=1e-6)
