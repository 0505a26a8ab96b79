"""Momentum encoder, momentum schedule and feature queue (contrastive.methods.memory)."""

from __future__ import annotations

import datetime
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contrastive.errors import InvalidArgumentsError
from contrastive.methods.memory import FeatureQueue, MomentumEncoder, momentum_schedule


def encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()


# -- MomentumEncoder ----------------------------------------------------------------------------
def test_momentum_encoder_is_a_frozen_copy_that_follows_the_mode():
    source = encoder()
    ema = MomentumEncoder(source)
    for (name, p), (_, q) in zip(ema.module.named_parameters(), source.named_parameters(), strict=True):
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr() and not p.requires_grad, name
    assert all(q.requires_grad for q in source.parameters())
    holder = nn.Module()
    holder.ema = ema
    holder.train()
    assert ema.module[1].training  # BatchNorm keeps batch statistics in training (MoCo's key encoder)
    x = torch.randn(5, 4, dtype=torch.float64)
    with torch.no_grad():
        ema(x)
    assert not torch.equal(ema.module[1].running_mean, source[1].running_mean)  # its own forward moves its stats
    holder.eval()
    assert not ema.module[1].training


def test_update_is_the_ema_of_the_parameters_only():
    source = encoder()
    ema = MomentumEncoder(source)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
        source(torch.randn(7, 4, dtype=torch.float64))  # moves the source's BN running stats
    old = {n: p.clone() for n, p in ema.module.named_parameters()}
    old_buffers = {n: b.clone() for n, b in ema.module.named_buffers()}
    ema.update(source, 0.9)
    for name, p in ema.module.named_parameters():
        expected = 0.9 * old[name] + 0.1 * dict(source.named_parameters())[name]
        torch.testing.assert_close(p, expected, rtol=0, atol=1e-15)
    for name, b in ema.module.named_buffers():  # buffers: untouched by update (official MoCo)
        assert torch.equal(b, old_buffers[name]), name
    ema.update(source, 0.0)
    assert all(torch.equal(p, q) for p, q in zip(ema.module.parameters(), source.parameters(), strict=True))
    ema.update(source, 1.0)  # m = 1: frozen
    assert all(torch.equal(p, q) for p, q in zip(ema.module.parameters(), source.parameters(), strict=True))


def test_update_refuses_another_module():
    ema = MomentumEncoder(encoder())
    with pytest.raises(ValueError, match="do not match"):
        ema.update(nn.Linear(4, 3).double(), 0.9)
    with pytest.raises(ValueError, match="momentum"):
        ema.update(encoder(), 1.5)


# -- momentum_schedule --------------------------------------------------------------------------
def test_momentum_schedule_constant_and_cosine():
    for step in (0, 50, 100):
        assert momentum_schedule(step, 100, 0.99) == 0.99
        assert momentum_schedule(step, 100, 0.99, schedule="constant") == 0.99
    assert momentum_schedule(0, 100, 0.99, schedule="cosine") == pytest.approx(0.99, abs=1e-15)
    assert momentum_schedule(50, 100, 0.99, schedule="cosine") == pytest.approx(0.995, abs=1e-15)
    assert momentum_schedule(100, 100, 0.99, schedule="cosine") == pytest.approx(1.0, abs=1e-15)
    assert momentum_schedule(25, 100, 0.9, final=0.99, schedule="cosine") == pytest.approx(
        0.99 - 0.09 * (math.cos(math.pi / 4) + 1) / 2, abs=1e-15)
    values = [momentum_schedule(s, 10, 0.9, schedule="cosine") for s in range(11)]
    assert values == sorted(values)
    with pytest.raises(InvalidArgumentsError, match="constant' or 'cosine"):
        momentum_schedule(0, 10, 0.9, schedule="linear")


# -- FeatureQueue --------------------------------------------------------------------------------
def rows(start: int, n: int, dim: int = 2) -> torch.Tensor:
    return torch.arange(start, start + n, dtype=torch.float32)[:, None].repeat(1, dim) + 1


def test_queue_fills_in_order_and_wraps():
    queue = FeatureQueue(5, 2)
    assert queue.read().shape == (0, 2) and len(queue) == 0
    queue.push(rows(0, 3))
    assert int(queue.filled) == 3 and int(queue.pointer) == 3
    assert torch.equal(queue.read(), rows(0, 3))
    queue.push(rows(3, 4))  # 4 and 5 fill rows 3, 4; 6 and 7 wrap to rows 0, 1; row 2 keeps 3
    assert int(queue.filled) == 5 and int(queue.pointer) == 2
    assert torch.equal(queue.read(), torch.cat([rows(5, 2), rows(2, 1), rows(3, 2)]))
    queue.push(rows(10, 7))  # more than the queue at once: the last 5 are kept, in ring order
    assert int(queue.filled) == 5 and int(queue.pointer) == (2 + 7) % 5
    expected = torch.zeros(5, 2)
    for value, position in zip(range(12, 17), [(2 + 2 + i) % 5 for i in range(5)], strict=True):
        expected[position] = value + 1
    assert torch.equal(queue.read(), expected)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        queue.push(torch.zeros(3, 4))
    with pytest.raises(InvalidArgumentsError):
        FeatureQueue(0, 2)


def test_read_never_goes_past_the_fill():
    queue = FeatureQueue(10, 3)
    for pushed in range(1, 5):
        queue.push(torch.ones(2, 3) * pushed)
        got = queue.read()
        assert got.shape == (min(2 * pushed, 10), 3)
        assert bool((got != 0).all())  # no empty (zero) row


def test_nearest_is_the_most_cosine_similar_filled_row():
    g = torch.Generator().manual_seed(0)
    queue = FeatureQueue(50, 8)
    queue.keys.copy_(torch.randn(50, 8, generator=g) * 3)  # rows past the fill must never be returned
    queue.keys[30:] = 0
    support = torch.randn(30, 8, generator=g) * torch.rand(30, 1, generator=g) * 5
    queue.push(support)
    z = torch.randn(12, 8, generator=g)
    got = queue.nearest(z)
    for i in range(12):
        sims = [F.cosine_similarity(z[i], support[j], dim=0) for j in range(30)]
        best = max(range(30), key=lambda j: sims[j])
        assert torch.equal(got[i], support[best]), i
    # both filled rows have negative cosine with z; the empty rows (cosine 0) must still lose
    far = FeatureQueue(6, 2)
    far.push(torch.tensor([[1.0, 0.0], [0.9, 0.1]]))
    assert torch.equal(far.nearest(torch.tensor([[-1.0, 0.0]])), torch.tensor([[0.9, 0.1]]))
    with pytest.raises(ValueError, match="empty"):
        FeatureQueue(4, 2).nearest(z[:, :2])


def test_state_dict_round_trip_of_a_half_full_queue():
    queue = FeatureQueue(8, 3)
    queue.push(torch.randn(4, 3))
    state = queue.state_dict()
    assert set(state) == {"keys", "pointer", "filled"}
    assert state["pointer"].dtype == torch.int64 and state["pointer"].ndim == 0
    copy = FeatureQueue(8, 3)
    copy.load_state_dict(state)
    assert int(copy.filled) == 4 and int(copy.pointer) == 4 and torch.equal(copy.read(), queue.read())
    more = torch.randn(6, 3)
    queue.push(more)
    copy.push(more)
    assert all(torch.equal(a, b) for a, b in zip(queue.state_dict().values(), copy.state_dict().values(), strict=True))


def _push_worker(rank: int, tmp_path, world: int) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=rank,
                                         world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        queue = FeatureQueue(8, 2)
        queue.push(rows(10 * rank, 3))
        first = queue.read().clone()
        queue.push(rows(10 * rank + 3, 3))  # 4 rows more than fit: wraps
        torch.save({"first": first, "state": queue.state_dict()}, tmp_path / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_hold_every_rank_s_keys_in_rank_order(tmp_path):
    torch.multiprocessing.start_processes(_push_worker, args=(tmp_path, 2), nprocs=2, start_method="spawn")
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.equal(results[0]["first"], torch.cat([rows(0, 3), rows(10, 3)]))
    single = FeatureQueue(8, 2)
    single.push(torch.cat([rows(0, 3), rows(10, 3)]))
    single.push(torch.cat([rows(3, 3), rows(13, 3)]))
    for result in results:
        assert torch.equal(result["first"], results[0]["first"])
        for name, value in single.state_dict().items():
            assert torch.equal(result["state"][name], value), name
