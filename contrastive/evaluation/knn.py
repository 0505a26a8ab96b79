"""Weighted kNN on frozen features, on the device, in chunks of bounded memory, over train
features held whole by one process or sharded across processes.

The neighbours of the test queries are found by `knn_candidates`: the cosine similarity of
every test feature with every train feature, taken block by block — at most
`KNN_TRAIN_BLOCK` train rows and ``KNN_CHUNK_ELEMENTS // block`` test rows at a time, moved to
``device`` and L2-normalised there — and the best ``k`` of each block folded into a running
top-``k`` by `merge_topk`.  The order is total: similarity descending, then global train
index ascending, so equal similarities (duplicated train features) give the same neighbours
however the train features are split into blocks or into process shards.

Peak memory on ``device`` (bytes, fp32 features of width ``D``, ``b = min(N_train, max(k,
KNN_TRAIN_BLOCK))`` train rows and ``r = max(1, KNN_CHUNK_ELEMENTS // b)`` test rows per block)::

    12·(b + r)·D           the two blocks of features (float32, and float64 for the product)
    + 12·r·b                their similarities (float64, then float32)
    + 12·r·b                masks and a rank, when ties straddle the k-th place
    + 100·N_test·k          the running candidates (similarity, index, label: 20 bytes each) and
                            the block's, concatenated and sorted by the merge

never ``N_test × N_train``: 192 MiB of similarities (+ 192 MiB of masks and rank where ties fall on
the k-th place), 2^16 train rows per block (1.5 GiB at D = 2048), and for 10,000 queries at
``k = 200`` 200 MB of candidates.  Sharded, the all-gather adds ``40·world·N_test·k``.

Sharded (``sharded=True``, an initialised ``torch.distributed`` process group): each process holds
a contiguous shard of the train features and labels, rank 0 the first; each computes its local
top-``k`` with global indices, the candidates (similarities, indices, labels, ``N_test × k`` each)
are all-gathered and merged — the same neighbours, bit for bit, as one process holding all.

Why not a library: scikit-learn's ``KNeighborsClassifier`` is CPU-only, holds all features and
cannot merge across processes; faiss is a heavy optional dependency for one matrix product."""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Bound on the elements of one block of the (test × train) similarity matrix (64 MiB in fp32).
KNN_CHUNK_ELEMENTS = 2**24
#: Train rows per block: the train features are moved to the device this many at a time.
KNN_TRAIN_BLOCK = 2**16
_NO_INDEX = torch.iinfo(torch.int64).max  # padding sorts after every real train index
# A float32 matrix product rounds differently with the shape of its operands (BLAS picks other
# kernels for other block and shard sizes: 1 ulp apart in our tests), which would make one process
# and four disagree on near-ties; products in float64, rounded to float32, agree.
_PRODUCT = torch.float64


def merge_topk(sims: torch.Tensor, index: torch.Tensor, labels: torch.Tensor, k: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The best ``k`` of candidate neighbours ``(R, M)`` per row (similarities, global train indices,
    labels), ordered by similarity descending then index ascending: ``(R, min(k, M))`` each.

    The order is total (indices are unique), so merging the candidates of blocks or of processes
    in any grouping gives the same result as one top-``k`` over everything."""
    order = index.argsort(dim=1, stable=True)
    sims, index, labels = sims.gather(1, order), index.gather(1, order), labels.gather(1, order)
    order = sims.argsort(dim=1, descending=True, stable=True)[:, :k]
    return sims.gather(1, order), index.gather(1, order), labels.gather(1, order)


def _block_topk(sim: torch.Tensor, k: int) -> torch.Tensor:
    """Column indices ``(r, k)`` of the ``k`` largest of each row of ``sim`` ``(r, c)``, ties at the
    k-th value going to the lowest columns (``torch.topk`` picks among ties in no stated order)."""
    top = sim.topk(k, dim=1)
    kth = top.values[:, -1:]
    tied = (sim >= kth).sum(1) > k  # more candidates than places: some equal to the k-th are left out
    index = top.indices
    if bool(tied.any()):
        rows = sim[tied]
        above, equal = rows > kth[tied], rows == kth[tied]
        wanted = k - above.sum(1, keepdim=True)
        keep = above | (equal & (equal.cumsum(1) <= wanted))
        index = index.clone()
        index[tied] = keep.nonzero()[:, 1].view(-1, k)
    return index


@torch.no_grad()
def _local_candidates(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, k: int,
                      device: torch.device, offset: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n_test, n_train = test_x.shape[0], train_x.shape[0]
    k = min(k, n_train)
    sims = torch.full((n_test, 0), -torch.inf, device=device)
    index = torch.zeros((n_test, 0), dtype=torch.int64, device=device)
    labels = torch.zeros((n_test, 0), dtype=torch.int64, device=device)
    if k == 0:
        return sims, index, labels
    block = min(n_train, max(k, KNN_TRAIN_BLOCK))
    rows = max(1, KNN_CHUNK_ELEMENTS // block)
    for start in range(0, n_train, block):
        train = F.normalize(train_x[start : start + block].to(device, torch.float32), dim=1).to(_PRODUCT)
        block_y = train_y[start : start + block].to(device)
        kk = min(k, train.shape[0])
        parts = []
        for row in range(0, n_test, rows):
            test = F.normalize(test_x[row : row + rows].to(device, torch.float32), dim=1).to(_PRODUCT)
            sim = (test @ train.T).float()
            cols = _block_topk(sim, kk)
            parts.append((sim.gather(1, cols), cols))
        block_sims = torch.cat([p[0] for p in parts])
        block_cols = torch.cat([p[1] for p in parts])
        sims, index, labels = merge_topk(torch.cat([sims, block_sims], 1),
                                         torch.cat([index, block_cols + (offset + start)], 1),
                                         torch.cat([labels, block_y[block_cols]], 1), k)
    return sims, index, labels


@torch.no_grad()
def knn_candidates(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, *, k: int,
    device: torch.device | str | None = None, sharded: bool = False, group=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` nearest train features (cosine) of each test feature: similarities ``(N_test, k')``
    float32, global train indices and their labels ``(N_test, k')`` int64, on ``device`` (default:
    CPU), ordered by similarity descending then index ascending; ``k' = min(k, N_train)``.

    ``train_x`` ``(N_train, D)`` / ``train_y`` ``(N_train,)``: all the train features, or with
    ``sharded`` this process's contiguous shard of them (rank order; ``group``: the process group,
    default the world); ``test_x`` ``(N_test, D)`` the same on every process.  Features may live
    anywhere; they are moved to ``device`` one block at a time."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if not sharded:
        return _local_candidates(train_x, train_y, test_x, k, device, 0)
    import torch.distributed as dist

    world, rank = dist.get_world_size(group), dist.get_rank(group)
    where = torch.device("cpu") if dist.get_backend(group) == "gloo" else device
    sizes = [torch.zeros(1, dtype=torch.int64, device=where) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([train_x.shape[0]], device=where), group=group)
    sizes = [int(s) for s in sizes]
    k = min(k, sum(sizes))
    local = _local_candidates(train_x, train_y, test_x, k, device, sum(sizes[:rank]))
    pad = k - local[0].shape[1]  # a shard smaller than k: every process sends k columns
    fill = (-torch.inf, _NO_INDEX, -1)
    gathered = []
    for part, value in zip(local, fill, strict=True):
        part = torch.cat([part, torch.full((part.shape[0], pad), value, dtype=part.dtype, device=part.device)], 1).to(where)
        parts = [torch.empty_like(part) for _ in range(world)]
        dist.all_gather(parts, part.contiguous(), group=group)
        gathered.append(torch.cat(parts, 1).to(device))
    return merge_topk(*gathered, k)


def knn_votes(sims: torch.Tensor, labels: torch.Tensor, num_classes: int, temperature: float) -> torch.Tensor:
    """Class votes ``(R, num_classes)`` of neighbours ``(R, k)``: each votes ``exp(sim / T)`` for its label."""
    votes = torch.zeros(sims.shape[0], num_classes, device=sims.device)
    return votes.scatter_add_(1, labels, (sims / temperature).exp())


@torch.no_grad()
def knn_predict(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, *, num_classes: int,
    k: int = 200, temperature: float = 0.1, device: torch.device | str | None = None,
) -> torch.Tensor:
    """Class votes ``(N_test, num_classes)`` (CPU) of the weighted kNN (cosine, weights exp(sim / T))."""
    sims, _, labels = knn_candidates(train_x, train_y, test_x, k=max(1, k), device=device)
    return knn_votes(sims, labels, num_classes, temperature).cpu()


def accuracy_scores(votes_or_ranked: torch.Tensor, test_y: torch.Tensor, num_classes: int) -> dict[str, float]:
    """``top1`` (and ``top5`` with more than 5 classes) of class scores ``(N, num_classes)``."""
    ranked = votes_or_ranked.topk(min(5, num_classes), dim=1).indices
    hits = ranked == test_y.to(ranked.device)[:, None]
    n = len(test_y)
    scores = {"top1": int(hits[:, 0].sum()) / n}
    if num_classes > 5:
        scores["top5"] = int(hits.any(1).sum()) / n
    return scores


def knn_classify(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
    num_classes: int, k: int = 200, temperature: float = 0.1, device: torch.device | str | None = None,
) -> dict[str, float]:
    """Top-1 (and top-5 when there are more than 5 classes) accuracy of the weighted kNN."""
    sims, _, labels = knn_candidates(train_x, train_y, test_x, k=max(1, k), device=device)
    return accuracy_scores(knn_votes(sims, labels, num_classes, temperature), test_y, num_classes)
