"""The linear probe: multinomial logistic regression on standardised frozen features, its L2
penalty chosen on a held-out 10% of the train features, solved by the size of the problem.

- ``lbfgs`` ([`linear_probe`][contrastive.evaluation.logistic.linear_probe] below `choose_solver`'s threshold): full-batch L-BFGS on
  all the features at once — the protocol of the SimCLR paper's transfer experiments; the
  standardised copy of the features, the logits of all of them and 20 pairs of L-BFGS history
  take about `lbfgs_bytes` ``= 4·(2·N·D + 3·N·C + 40·D·C)`` bytes, and each iteration
  ``N·D·C`` multiply-adds (20,000 × 2048 × 1000: 122 s on 2 CPU cores);
- ``minibatch`` (above it): Adam on mini-batches of `BATCH_SIZE` with a cosine schedule,
  `EPOCHS` passes over the precomputed features, on ``device``; mean and standard deviation
  come from a streaming pass (float64 sums, a block at a time) and each batch is standardised on
  its way to the device, so the features are never copied whole.  The weight-decay grid is trained
  at once, one head per penalty (Adam is element-wise, so the heads do not interact), on 90% and
  scored on the held-out 10%; the chosen penalty is then refitted on all.  Peak memory besides the
  caller's features: ``4·B·D`` (a batch) ``+ 12·B·G·C`` (logits, softmax, gradient) ``+
  16·G·C·D`` (weights, gradient, two Adam moments) bytes, ``G`` = 5 penalties while choosing, 1
  after; 1.28M × 2048 × 1000 at ``B`` = 1024: 0.23 GB besides the 10.5 GB of features.

Both minimise the same objective, mean cross entropy + ``wd/2·‖W‖²`` (bias not penalised); the
mini-batch solver stops after its epochs, not at the optimum (docs/evaluation.md states how close
it lands).  Why not scikit-learn: docs/evaluation.md (it is CPU-only, float64, and full-batch)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: L2 penalties tried by ``linear_weight_decay: auto`` (mean cross entropy + wd/2·‖W‖²).
WEIGHT_DECAY_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
#: ``auto`` uses full-batch L-BFGS up to this many multiply-adds per iteration (N·D·C) ...
LBFGS_MAX_WORK = 2**33
#: ... and this many bytes of working set (`lbfgs_bytes`); mini-batches above either.
LBFGS_MAX_BYTES = 2**31
#: Mini-batch solver: samples per step, passes over the train features (more on small data, to
#: take at least MIN_STEPS steps), Adam's peak learning rate.
BATCH_SIZE, EPOCHS, MIN_STEPS, LEARNING_RATE = 1024, 10, 500, 1e-2
#: Rows per block of the streaming passes (statistics, predictions).
_BLOCK = 2**14


def lbfgs_bytes(n: int, d: int, c: int) -> int:
    """Bytes full-batch L-BFGS holds for ``n`` features of width ``d`` and ``c`` classes."""
    return 4 * (2 * n * d + 3 * n * c + 40 * d * c)


def choose_solver(n: int, d: int, c: int) -> str:
    """``lbfgs`` for problems within `LBFGS_MAX_WORK` and `LBFGS_MAX_BYTES`, else ``minibatch``."""
    return "lbfgs" if n * d * c <= LBFGS_MAX_WORK and lbfgs_bytes(n, d, c) <= LBFGS_MAX_BYTES else "minibatch"


def _scores(correct1: int, correct5: int, n: int, num_classes: int) -> dict[str, float]:
    scores = {"top1": correct1 / n}
    if num_classes > 5:
        scores["top5"] = correct5 / n
    return scores


class _Threads:
    """Temporarily ``torch.set_num_threads(n)``: the probe's many tiny steps on small data run far
    faster on one thread (intra-op threads cost more than they save, and on a busy machine waiting
    for them cost 60x in our measurements)."""

    def __init__(self, n: int | None) -> None:
        self.n, self.saved = n, torch.get_num_threads()

    def __enter__(self) -> None:
        if self.n is not None:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.saved)


def _fit_logistic(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float, max_iter: int, init: nn.Linear | None = None,
) -> nn.Linear:
    """Multinomial logistic regression, full-batch L-BFGS on mean CE + wd/2·‖W‖² (bias not
    penalised), from zero weights or warm-started from ``init``."""
    linear = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        linear.weight.copy_(init.weight if init is not None else torch.zeros_like(linear.weight))
        linear.bias.copy_(init.bias if init is not None else torch.zeros_like(linear.bias))
    optimizer = torch.optim.LBFGS(
        linear.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
        tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(x), y) + 0.5 * weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad(), _Threads(1 if x.numel() < 2**20 else None):
        optimizer.step(closure)
    return linear


def linear_probe(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
    num_classes: int, weight_decay: float | str = "auto", max_iter: int = 500, seed: int = 0,
    solver: str = "auto", device: torch.device | str | None = None,
) -> dict[str, float]:
    """Top-1/top-5 of a linear classifier on standardised frozen features ``(N_train, D)`` /
    ``(N_test, D)`` with int64 labels; also the chosen ``weight_decay``.  ``solver``: ``lbfgs``
    (full batch, CPU, ``max_iter`` iterations), ``minibatch`` (on ``device``, default CPU) or
    ``auto`` (`choose_solver`); mini-batch scores also hold ``minibatch: 1.0``, so that
    results.json says which solver ran."""
    if solver == "auto":
        solver = choose_solver(train_x.shape[0], train_x.shape[1], num_classes)
    if solver == "minibatch":
        return minibatch_probe(train_x, train_y, test_x, test_y, num_classes=num_classes,
                               weight_decay=weight_decay, seed=seed, device=device)
    if solver != "lbfgs":
        raise ValueError(f"unknown linear probe solver {solver!r} (auto, lbfgs or minibatch)")
    mean = train_x.mean(0)
    std = train_x.std(0)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    train_x = (train_x - mean) / std
    test_x = (test_x - mean) / std
    if weight_decay == "auto":
        n = train_x.shape[0]
        held = max(1, n // 10)
        if n - held < 2:
            weight_decay = 1e-4
        else:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            val, fit_idx = perm[:held], perm[held:]
            best, model = None, None
            for wd in sorted(WEIGHT_DECAY_GRID, reverse=True):  # strong to weak, each warm-started
                # the search needs a ranking, not the optimum: fewer iterations, warm-started
                model = _fit_logistic(train_x[fit_idx], train_y[fit_idx], num_classes, wd, min(max_iter, 100), init=model)
                with torch.no_grad():
                    acc = (model(train_x[val]).argmax(1) == train_y[val]).float().mean().item()
                if best is None or acc > best[0]:  # ties go to the larger penalty
                    best = (acc, wd)
            weight_decay = best[1]
    model = _fit_logistic(train_x, train_y, num_classes, float(weight_decay), max_iter)
    with torch.no_grad():
        ranked = model(test_x).topk(min(5, num_classes), dim=1).indices
    hits = ranked == test_y[:, None]
    scores: dict[str, Any] = _scores(int(hits[:, 0].sum()), int(hits.any(1).sum()), len(test_y), num_classes)
    scores["weight_decay"] = float(weight_decay)
    return scores




@torch.no_grad()
def feature_stats(x: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation (unbiased, as ``torch.std``; 1 where below 1e-8) of ``x``
    ``(N, D)``, float32 ``(D,)`` on ``device``, from float64 sums over blocks shifted by the first
    row (no cancellation for features far from 0), never a full copy of ``x``."""
    n = x.shape[0]
    shift = x[0].to(device, torch.float64)
    total = torch.zeros_like(shift)
    squares = torch.zeros_like(shift)
    for start in range(0, n, _BLOCK):
        block = x[start : start + _BLOCK].to(device, torch.float64) - shift
        total += block.sum(0)
        squares += block.pow(2).sum(0)
    mean = total / n
    var = (squares - n * mean.pow(2)) / max(1, n - 1)
    std = var.clamp(min=0).sqrt()
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return (mean + shift).float(), std.float()


def _fit_heads(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, stats, num_classes: int,
               decays: tuple[float, ...], seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One linear head per penalty in ``decays``, trained together on ``x[rows]`` by Adam with a
    cosine schedule: weights ``(G, C, D)`` and biases ``(G, C)``."""
    mean, std = stats
    g, d = len(decays), x.shape[1]
    weight = torch.zeros(g * num_classes, d, device=device, requires_grad=True)
    bias = torch.zeros(g * num_classes, device=device, requires_grad=True)
    penalty = torch.tensor(decays, device=device).repeat_interleave(num_classes)[:, None]
    optimizer = torch.optim.Adam([weight, bias], lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(seed)
    per_epoch = math.ceil(len(rows) / BATCH_SIZE)
    epochs = max(EPOCHS, math.ceil(MIN_STEPS / per_epoch))
    total = epochs * per_epoch
    step = 0
    small = device.type == "cpu" and BATCH_SIZE * d * g * num_classes < 2**28  # see _Threads
    with torch.enable_grad(), _Threads(1 if small else None):
        for _ in range(epochs):
            order = rows[torch.randperm(len(rows), generator=generator)]
            for start in range(0, len(order), BATCH_SIZE):
                batch = order[start : start + BATCH_SIZE]
                xb = (x[batch].to(device, torch.float32) - mean) / std
                yb = y[batch].to(device)
                logits = (xb @ weight.T + bias).view(len(batch), g, num_classes)
                loss = F.cross_entropy(logits.transpose(1, 2), yb[:, None].expand(-1, g), reduction="sum") / len(batch)
                loss = loss + 0.5 * (penalty * weight.pow(2)).sum()
                for group in optimizer.param_groups:
                    group["lr"] = LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * step / total))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
    return weight.detach().view(g, num_classes, d), bias.detach().view(g, num_classes)


@torch.no_grad()
def _predict_topk(x: torch.Tensor, rows, stats, weight: torch.Tensor, bias: torch.Tensor, k: int,
                  device: torch.device) -> torch.Tensor:
    """Top-``k`` classes ``(N, G, k)`` (CPU) of every head on ``x[rows]`` (all rows when None), block by block."""
    mean, std = stats
    g, c, d = weight.shape
    n = x.shape[0] if rows is None else len(rows)
    out = []
    for start in range(0, n, _BLOCK):
        block = x[start : start + _BLOCK] if rows is None else x[rows[start : start + _BLOCK]]
        block = (block.to(device, torch.float32) - mean) / std
        logits = (block @ weight.view(g * c, d).T + bias.view(-1)).view(len(block), g, c)
        out.append(logits.topk(k, dim=2).indices.cpu())
    return torch.cat(out) if out else torch.zeros(0, g, k, dtype=torch.int64)


def minibatch_probe(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
    num_classes: int, weight_decay: float | str = "auto", seed: int = 0, device: torch.device | str | None = None,
) -> dict[str, float]:
    """[`linear_probe`][contrastive.evaluation.logistic.linear_probe] by mini-batches on ``device`` (the module docstring states its memory)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    stats = feature_stats(train_x, device)
    n = train_x.shape[0]
    if weight_decay == "auto":
        held = max(1, n // 10)
        if n - held < 2:
            weight_decay = 1e-4
        else:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            val, fit_idx = perm[:held], perm[held:]
            decays = tuple(sorted(WEIGHT_DECAY_GRID, reverse=True))
            weight, bias = _fit_heads(train_x, train_y, fit_idx, stats, num_classes, decays, seed, device)
            predicted = _predict_topk(train_x, val, stats, weight, bias, 1, device)[:, :, 0]
            accuracy = (predicted == train_y[val][:, None]).float().mean(0)
            weight_decay = decays[int(accuracy.argmax())]  # the first best: ties go to the larger penalty
    weight, bias = _fit_heads(train_x, train_y, torch.arange(n), stats, num_classes, (float(weight_decay),), seed, device)
    ranked = _predict_topk(test_x, None, stats, weight, bias, min(5, num_classes), device)[:, 0]
    hits = ranked == test_y[:, None]
    scores: dict[str, Any] = _scores(int(hits[:, 0].sum()), int(hits.any(1).sum()), len(test_y), num_classes)
    scores["weight_decay"] = float(weight_decay)
    scores["minibatch"] = 1.0
    return scores
