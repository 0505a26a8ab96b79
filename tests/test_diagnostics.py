"""Training diagnostics (contrastive.diagnostics): each number against a definition written out
pair by pair, the tiny-batch guards, the global batch under several processes and under
``trainer.accumulate``, and the methods that return them."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import contrastive
from contrastive import diagnostics
from contrastive.methods.base import Batch
from contrastive.training.step import grad_cache_step, split_loss
from tests.helpers import run_gloo

TAU = 0.5


def naive(z: torch.Tensor, ids: list[int], samples: list[int], tau: float | None = TAU, candidates=None,
          positives=None) -> dict[str, float]:
    """The definitions, one anchor and one pair at a time, in float64.

    ``candidates[i]`` / ``positives[i]``: the candidate and positive columns of anchor i
    (default: every other row / the other rows of i's id)."""
    z = F.normalize(z.double(), dim=1)
    n = z.shape[0]
    cos = z @ z.T
    candidates = candidates or [[j for j in range(n) if j != i] for i in range(n)]
    positives = positives or [[j for j in candidates[i] if ids[j] == ids[i]] for i in range(n)]
    pos, hardest, correct, with_pos, entropy = [], [], 0, 0, []
    for i in range(n):
        negs = [j for j in candidates[i] if j not in positives[i]]
        pos += [float(cos[i, j]) for j in positives[i]]
        if negs:
            hardest.append(max(float(cos[i, j]) for j in negs))
        if positives[i]:
            with_pos += 1
            best = max(float(cos[i, j]) for j in positives[i])
            correct += not negs or best > max(float(cos[i, j]) for j in negs)
        if tau is not None and len(candidates[i]) >= 2:
            logits = torch.tensor([float(cos[i, j]) / tau for j in candidates[i]], dtype=torch.float64)
            p = torch.softmax(logits, 0)
            entropy.append(float(-(p * p.log()).sum()) / math.log(len(candidates[i])))
    pairs = [(i, j) for i, j in itertools.permutations(range(n), 2) if samples[i] != samples[j]]
    out = {}
    if pos:
        out["positive_cosine"] = sum(pos) / len(pos)
        out["alignment"] = sum(2 - 2 * c for c in pos) / len(pos)
    if hardest:
        out["hardest_negative_cosine"] = sum(hardest) / len(hardest)
    if with_pos:
        out["contrastive_accuracy"] = correct / with_pos
    if entropy:
        out["logit_entropy"] = sum(entropy) / len(entropy)
    if pairs:
        out["uniformity"] = math.log(sum(math.exp(-2 * float((z[i] - z[j]).pow(2).sum())) for i, j in pairs) / len(pairs))
    if n >= 2:  # embedding_std: unbiased std over the rows of each dimension, averaged over the dimensions
        stds = []
        for d in range(z.shape[1]):
            column = [float(z[i, d]) for i in range(n)]
            mean = sum(column) / n
            stds.append(math.sqrt(sum((c - mean) ** 2 for c in column) / (n - 1)))
        out["embedding_std"] = sum(stds) / len(stds)
    return out


def assert_same(got: dict[str, float], want: dict[str, float], atol: float = 1e-6) -> None:
    assert set(got) == set(want), (sorted(got), sorted(want))
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=atol), name


def simclr_rows(n: int = 6, views: int = 2, dim: int = 5, seed: int = 0):
    z = torch.randn(n * views, dim, generator=torch.Generator().manual_seed(seed))
    ids = torch.arange(n).repeat_interleave(views)
    return z, ids


def test_batch_tally_matches_the_definitions_for_two_and_four_views():
    for views in (2, 4):
        z, ids = simclr_rows(views=views)
        got = diagnostics.batch_tally(z, ids, TAU).result()
        assert set(got) == set(diagnostics.NAMES)
        assert_same(got, naive(z, ids.tolist(), ids.tolist()))


def test_class_positives_and_image_pairs_are_told_apart():
    """SupCon: positives are the views of one class; uniformity's pairs are of different images."""
    z, samples = simclr_rows(n=8)
    labels = torch.tensor([0, 1, 0, 2, 1, 1, 2, 0]).repeat_interleave(2)
    got = diagnostics.batch_tally(z, labels, 0.1, samples=samples).result()
    assert_same(got, naive(z, labels.tolist(), samples.tolist(), tau=0.1))
    assert got["uniformity"] != pytest.approx(diagnostics.batch_tally(z, labels, 0.1).result()["uniformity"])


def test_known_values_of_a_perfect_and_a_collapsed_representation():
    aligned = torch.eye(4).repeat_interleave(2, dim=0)  # both views of image i on axis i
    ids = torch.arange(4).repeat_interleave(2)
    perfect = diagnostics.batch_tally(aligned, ids, TAU).result()
    assert perfect["positive_cosine"] == pytest.approx(1.0) and perfect["alignment"] == pytest.approx(0.0, abs=1e-7)
    assert perfect["hardest_negative_cosine"] == pytest.approx(0.0) and perfect["contrastive_accuracy"] == 1.0
    assert perfect["uniformity"] == pytest.approx(-4.0)  # every pair of different images at distance² 2
    collapsed = diagnostics.batch_tally(torch.ones(8, 3), ids, TAU).result()
    assert collapsed["logit_entropy"] == pytest.approx(1.0)  # a uniform row: nothing told apart
    assert collapsed["contrastive_accuracy"] == 0.0 and collapsed["uniformity"] == pytest.approx(0.0, abs=1e-7)


def test_tiny_batches_leave_out_what_has_no_pairs():
    one = diagnostics.batch_tally(torch.randn(2, 4), torch.tensor([0, 0]), TAU).result()
    assert set(one) == {"positive_cosine", "alignment", "contrastive_accuracy", "embedding_std"}  # 1 candidate: no entropy either
    assert one["contrastive_accuracy"] == 1.0
    alone = diagnostics.batch_tally(torch.randn(3, 4), torch.tensor([0, 1, 2]), None).result()
    assert set(alone) == {"hardest_negative_cosine", "uniformity", "embedding_std"}  # no positives, no temperature
    assert diagnostics.batch_tally(torch.randn(1, 4), torch.tensor([0]), TAU).result() == {}


def test_blocks_of_rows_give_the_whole_matrix(monkeypatch):
    z, ids = simclr_rows(n=10, views=3)
    z = z.double()  # float64 kept: equal sums to the last bits
    whole = diagnostics.batch_tally(z, ids, TAU).result()
    monkeypatch.setattr(diagnostics, "BLOCK_ENTRIES", 7)  # one row a block
    assert_same(diagnostics.batch_tally(z, ids, TAU).result(), whole, atol=1e-12)
    q, k = torch.randn(5, 4), torch.randn(5, 4)
    assert diagnostics.key_tally(q, k, TAU, torch.randn(9, 4)).result()


def test_key_tally_with_a_queue_and_with_the_batch_keys():
    g = torch.Generator().manual_seed(1)
    q, k, queue = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g), torch.randn(7, 6, generator=g)
    got = diagnostics.key_tally(q, k, 0.2, queue).result()
    rows = torch.cat([q, k, queue])  # anchors 0..3; candidates of anchor i: its key 4 + i and the queue 8..14
    want = naive(rows, list(range(15)), list(range(15)), tau=0.2, candidates=[[4 + i, *range(8, 15)] for i in range(4)]
                 + [[] for _ in range(11)], positives=[[4 + i] for i in range(4)] + [[] for _ in range(11)])
    of_queries = naive(q, list(range(4)), list(range(4)))
    want["uniformity"] = of_queries["uniformity"]  # of the queries only
    want["embedding_std"] = of_queries["embedding_std"]  # the queries' too
    assert_same(got, want)
    batch_keys = diagnostics.key_tally(q, k, 0.2).result()  # candidates: every key, the own one positive
    rows = torch.cat([q, k])
    want = naive(rows, list(range(8)), list(range(8)), tau=0.2, candidates=[list(range(4, 8))] * 4 + [[]] * 4,
                 positives=[[4 + i] for i in range(4)] + [[]] * 4)
    want["uniformity"] = got["uniformity"]
    want["embedding_std"] = of_queries["embedding_std"]
    assert_same(batch_keys, want)
    assert diagnostics.key_tally(q, k, 0.2, torch.empty(0, 6)).result() == batch_keys  # an empty queue: the batch's keys


def _halves(rank: int, world: int, z: torch.Tensor, ids: torch.Tensor, q: torch.Tensor, k: torch.Tensor):
    rows, keys = z.shape[0] // world, q.shape[0] // world
    part = slice(rank * rows, (rank + 1) * rows)
    keys_part = slice(rank * keys, (rank + 1) * keys)
    return (diagnostics.batch_tally(z[part], ids[part], TAU).result(),
            diagnostics.key_tally(q[keys_part], k[keys_part], TAU).result())


def test_several_processes_give_the_global_batch(tmp_path):
    z, ids = simclr_rows(n=8, views=2, seed=3)
    q, k = torch.randn(8, 5), torch.randn(8, 5)
    results = run_gloo(_halves, z, ids, q, k, worlds=(1, 2), tmp_path=tmp_path)
    one = results[1][0]
    for rank_result in results[2]:  # every rank holds the global numbers
        for got, want in zip(rank_result, one, strict=True):
            assert_same(got, want, atol=1e-6)


def _simclr(temperature: float = TAU):
    registries = contrastive.load_registries(autoload=False)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6))  # no batch statistics: chunks are exact
    backbone.num_features = 6
    head = registries.heads.build("mlp", in_dim=6, hidden_dim=8, out_dim=4, batch_norm=False)
    loss = registries.losses.build("ntxent", temperature=temperature)
    return registries.methods.build("simclr", backbone=backbone, head=head, loss=loss)


def test_accumulated_chunks_give_the_diagnostics_of_the_whole_step():
    torch.manual_seed(0)
    method = _simclr()
    views = [torch.randn(8, 3, 2, 2) for _ in range(2)]
    batch = Batch(images=torch.zeros(8, 3, 2, 2, dtype=torch.uint8), labels=torch.full((8,), -1), index=torch.arange(8))

    def forward(chunk_size):
        return lambda k: method([v[k * chunk_size:(k + 1) * chunk_size] for v in views], batch.slice(k * chunk_size, (k + 1) * chunk_size))

    def loss_fn(outputs):
        with diagnostics.collecting():
            return split_loss(method.loss(outputs, batch))

    _, whole, _ = grad_cache_step(forward(8), loss_fn, 1)
    _, chunked, _ = grad_cache_step(forward(4), loss_fn, 2)
    assert set(whole) == set(diagnostics.NAMES)
    assert_same(chunked, whole, atol=1e-6)


def test_methods_pay_nothing_on_unrecorded_steps():
    method = _simclr()
    views = [torch.randn(4, 3, 2, 2) for _ in range(2)]
    batch = Batch(images=torch.zeros(4, 3, 2, 2, dtype=torch.uint8), labels=torch.full((4,), -1), index=torch.arange(4))
    out = method(views, batch)
    assert not diagnostics.requested()
    plain = method.loss(out, batch)
    assert isinstance(plain, torch.Tensor)
    with diagnostics.collecting():
        assert diagnostics.requested()
        loss, logs = method.loss(out, batch)
    assert not diagnostics.requested() and torch.equal(loss, plain)
    z = out["z"].detach()
    assert_same(logs, naive(z.reshape(8, -1), batch.index.repeat_interleave(2).tolist(),
                            batch.index.repeat_interleave(2).tolist()))
