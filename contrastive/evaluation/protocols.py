"""The protocols on frozen features, tensors in and scores out: weighted kNN ([`knn_classify`][contrastive.evaluation.protocols.knn_classify])
and the L-BFGS linear probe ([`linear_probe`][contrastive.evaluation.protocols.linear_probe]), registered as ``knn`` and ``linear`` under the
``protocols`` kind, and [`score_features`][contrastive.evaluation.protocols.score_features] running the ones a recipe asks for.

The protocol contract (every entry of ``protocols``, built in or from a plugin)::

    protocol(train_x, train_y, test_x, test_y, *, num_classes, config, seed) -> {score_name: float}

``train_x`` ``(N_train, D)`` and ``test_x`` ``(N_test, D)`` are the frozen backbone's features
(float32, CPU, every process has them all), ``train_y`` / ``test_y`` int64 class indices;
``config`` is the recipe's ``eval:`` section, ``seed`` the recipe's seed (for any random draw:
the same run gives the same scores).  ``protocol.needs_labels`` (default True) says whether it
needs labelled data: if so it gets only the labelled samples and never runs on unlabelled data
(``eval.protocols: auto`` leaves it out there); if not, unlabelled samples come with label -1.
Each score lands as ``<protocol>_<score_name>`` in results.json, the printed table and the
report.  Nothing here reads recipes or datasets."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: L2 penalties tried by ``linear_weight_decay: auto`` (mean cross entropy + wd/2·‖W‖²).
WEIGHT_DECAY_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
#: Bound on the elements of one chunk of the (test × train) similarity matrix (64 MiB in fp32).
KNN_CHUNK_ELEMENTS = 2**24


def _scores(correct1: int, correct5: int, n: int, num_classes: int) -> dict[str, float]:
    scores = {"top1": correct1 / n}
    if num_classes > 5:
        scores["top5"] = correct5 / n
    return scores


@torch.no_grad()
def knn_predict(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, *, num_classes: int,
    k: int = 200, temperature: float = 0.1,
) -> torch.Tensor:
    """Class votes ``(N_test, num_classes)`` of the weighted kNN (cosine, weights exp(sim / T))."""
    train = F.normalize(train_x.float(), dim=1)
    test = F.normalize(test_x.float(), dim=1)
    k = max(1, min(k, train.shape[0]))
    rows = max(1, KNN_CHUNK_ELEMENTS // max(1, train.shape[0]))
    votes = torch.zeros(test.shape[0], num_classes)
    for start in range(0, test.shape[0], rows):
        sim = test[start : start + rows] @ train.T
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes[start : start + rows].scatter_add_(1, train_y[top_idx], weights)
    return votes


def knn_classify(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
    num_classes: int, k: int = 200, temperature: float = 0.1,
) -> dict[str, float]:
    """Top-1 (and top-5 when there are more than 5 classes) accuracy of the weighted kNN."""
    votes = knn_predict(train_x, train_y, test_x, num_classes=num_classes, k=k, temperature=temperature)
    ranked = votes.topk(min(5, num_classes), dim=1).indices
    hits = ranked == test_y[:, None]
    return _scores(int(hits[:, 0].sum()), int(hits.any(1).sum()), len(test_y), num_classes)


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
) -> dict[str, float]:
    """Top-1/top-5 of a linear classifier on standardised frozen features; also the chosen ``weight_decay``."""
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


def knn(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
        num_classes: int, config, seed: int = 0) -> dict[str, float]:
    """Weighted kNN on cosine similarity (``eval.knn_k`` neighbours, ``eval.knn_temperature``): top1, top5."""
    return knn_classify(train_x, train_y, test_x, test_y, num_classes=num_classes, k=config.knn_k,
                        temperature=config.knn_temperature)


def linear(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
           num_classes: int, config, seed: int = 0) -> dict[str, float]:
    """L-BFGS logistic regression on standardised features (``eval.linear_*``): top1, top5, weight_decay."""
    return linear_probe(train_x, train_y, test_x, test_y, num_classes=num_classes,
                        weight_decay=config.linear_weight_decay, max_iter=config.linear_max_iter, seed=seed)


knn.needs_labels = True  # type: ignore[attr-defined]
linear.needs_labels = True  # type: ignore[attr-defined]
#: The built-in protocols (registered under ``protocols``; used when no registries are given).
BUILTIN = {"knn": knn, "linear": linear}


def needs_labels(protocol) -> bool:
    """Whether ``protocol`` needs labelled data (its ``needs_labels``; True when it does not say)."""
    return bool(getattr(protocol, "needs_labels", True))


def score_features(
    train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor], protocols: list[str],
    config, num_classes: int, seed: int = 0, registries=None,
) -> dict[str, float]:
    """``{<protocol>_<score>: value}`` of the protocols asked, in order (``registries``: where to find
    them; without, the built-ins).  A protocol that fails is named with its plugin."""
    from contrastive.errors import EvaluationError

    (train_x, train_y), (test_x, test_y) = train, test
    keep_train, keep_test = train_y >= 0, test_y >= 0  # unlabeled samples take no part in labelled protocols
    labelled = (train_x[keep_train], train_y[keep_train], test_x[keep_test], test_y[keep_test])
    out: dict[str, float] = {}
    for name in protocols:
        protocol = registries.protocols.get(name) if registries is not None else BUILTIN[name]
        tensors = labelled if needs_labels(protocol) else (train_x, train_y, test_x, test_y)
        try:
            scores = protocol(*tensors, num_classes=num_classes, config=config, seed=seed)
            if not isinstance(scores, dict):
                raise TypeError(f"returned {type(scores).__name__}, not a dict of score names to numbers")
            scores = {str(key): float(value) for key, value in scores.items()}
        except Exception as exc:
            source = registries.protocols.source(name) if registries is not None else "contrastive"
            message = " ".join(str(exc).split()) or "(no message)"
            raise EvaluationError(f"evaluation protocol '{name}' (from {source}) failed: {type(exc).__name__}: "
                                  f"{message}; fix it or leave it out of eval.protocols") from exc
        out.update({f"{name}_{key}": value for key, value in scores.items()})
    return out
