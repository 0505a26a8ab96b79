"""kNN in blocks and across processes: train features sharded over 2 and 4 gloo processes give
the same neighbours, bit for bit, as one process, ties included; blocks of any size agree."""

import pytest
import torch

import contrastive.evaluation.knn as knn
from contrastive.evaluation.knn import knn_candidates, merge_topk
from tests.helpers import run_gloo


def _features(seed: int = 0):
    """Train features with exact duplicates (equal similarities, different labels) straddling the
    shard boundaries of 2 and 4 processes, and test queries equal to some of them."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(12, 6, generator=g)
    train_x = base[torch.randint(0, 12, (40,), generator=g)]  # 40 rows, ~3 copies of each
    train_y = torch.randint(0, 5, (40,), generator=g)
    test_x = torch.cat([base[:6], torch.randn(5, 6, generator=g)])
    return train_x, train_y, test_x


def _sharded(rank: int, world: int, ks: tuple[int, ...]):
    train_x, train_y, test_x = _features()
    bounds = [len(train_x) * r // world for r in range(world + 1)]
    shard = slice(bounds[rank], bounds[rank + 1])
    return {k: knn_candidates(train_x[shard], train_y[shard], test_x, k=k, sharded=True) for k in ks}


@pytest.fixture(scope="module")
def gathered(tmp_path_factory):
    """``{k: {world: [rank 0's candidates, ...]}}``, from one spawn of 4 processes."""
    runs = run_gloo(_sharded, (7, 30), worlds=(2, 4), tmp_path=tmp_path_factory.mktemp("knn"))
    return {k: {world: [result[k] for result in results] for world, results in runs.items()} for k in (7, 30)}


@pytest.fixture
def one_thread():
    """The gloo workers run on one thread (tests.helpers): so does the one process they are held
    to, since a matrix product may round differently on another thread count."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize("k", [7, 30])  # 30: more than the 10 train rows of a shard of 4
def test_sharded_processes_find_the_neighbours_of_one_process(gathered, one_thread, k):
    train_x, train_y, test_x = _features()
    one = knn_candidates(train_x, train_y, test_x, k=k)
    assert bool((one[0][:, :-1] == one[0][:, 1:]).any())  # ties are there to break
    for world, results in gathered[k].items():
        for rank, result in enumerate(results):
            for got, want in zip(result, one, strict=True):
                assert torch.equal(got, want), (world, rank)


def test_ties_go_to_the_lowest_train_index_whatever_the_blocks(monkeypatch):
    train_x, train_y, test_x = _features()
    whole = knn_candidates(train_x, train_y, test_x, k=7)
    sims, index = whole[0], whole[1]
    unit = torch.nn.functional.normalize
    sim = (unit(test_x, dim=1).double() @ unit(train_x, dim=1).double().T).float()  # as the kNN: float64 products
    for row in range(len(test_x)):  # brute force: sort by (-similarity, index)
        order = sorted(range(len(train_x)), key=lambda j: (-float(sim[row, j]), j))[:7]
        assert index[row].tolist() == order and torch.equal(sims[row], sim[row, order])
    for block, chunk in ((7, 7 * 3), (9, 9 * 2), (16, 16 * 11)):
        monkeypatch.setattr(knn, "KNN_TRAIN_BLOCK", block)
        monkeypatch.setattr(knn, "KNN_CHUNK_ELEMENTS", chunk)
        for got, want in zip(knn_candidates(train_x, train_y, test_x, k=7), whole, strict=True):
            assert torch.equal(got, want), block


def test_merge_orders_by_similarity_then_index_in_any_grouping():
    sims = torch.tensor([[0.5, 0.9, 0.5, 0.9, 0.1, 0.5]])
    index = torch.tensor([[8, 3, 2, 1, 0, 5]])
    labels = index * 10
    s, i, lab = merge_topk(sims, index, labels, 4)
    assert i.tolist() == [[1, 3, 2, 5]] and torch.equal(s, sims[:, [1, 3, 0, 2]]) and torch.equal(lab, i * 10)
    left = merge_topk(sims[:, :3], index[:, :3], labels[:, :3], 4)
    right = merge_topk(sims[:, 3:], index[:, 3:], labels[:, 3:], 4)
    again = merge_topk(*(torch.cat(pair, 1) for pair in zip(left, right, strict=True)), 4)
    assert all(torch.equal(a, b) for a, b in zip(again, (s, i, lab), strict=True))
