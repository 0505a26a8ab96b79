"""The protocols on frozen features, tensors in and scores out: weighted kNN with retrieval scores
(`knn`, `retrieval`) and the linear probe (`logistic`), registered as ``knn``
and ``linear`` under the ``protocols`` kind, and [`score_features`][contrastive.evaluation.protocols.score_features] running the ones a recipe
asks for.

The protocol contract (every entry of ``protocols``, built in or from a plugin)::

    protocol(train_x, train_y, test_x, test_y, *, num_classes, config, seed) -> {score_name: float}

``train_x`` ``(N_train, D)`` and ``test_x`` ``(N_test, D)`` are the frozen backbone's features
(float32, CPU, every process has them all), ``train_y`` / ``test_y`` int64 class indices;
``config`` is the recipe's ``eval:`` section, ``seed`` the recipe's seed (for any random draw:
the same run gives the same scores).  ``protocol.needs_labels`` (default True) says whether it
needs labelled data: if so it gets only the labelled samples and never runs on unlabelled data
(``eval.protocols: auto`` leaves it out there); if not, unlabelled samples come with label -1.
Each score lands as ``<protocol>_<score_name>`` in results.json, the printed table and the
report.  Optional keywords, given only to a protocol whose signature names them (so plugin
protocols written to the line above keep working): ``device``, the device the backbone was
trained on (CUDA when there, else CPU), where a protocol may do its work.  Nothing here reads
recipes or datasets."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import torch

from contrastive.evaluation.knn import (
    KNN_CHUNK_ELEMENTS,
    accuracy_scores,
    knn_candidates,
    knn_classify,
    knn_predict,
    knn_votes,
)
from contrastive.evaluation.logistic import WEIGHT_DECAY_GRID, linear_probe
from contrastive.evaluation.retrieval import retrieval_scores

if TYPE_CHECKING:
    from contrastive.registry import Registries

__all__ = ["BUILTIN", "KNN_CHUNK_ELEMENTS", "WEIGHT_DECAY_GRID", "knn", "knn_classify", "knn_predict", "linear",
           "linear_probe", "needs_labels", "score_features"]


def knn(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
        num_classes: int, config, seed: int = 0, device: torch.device | str | None = None) -> dict[str, float]:
    """Weighted kNN on cosine similarity (``eval.knn_k`` neighbours, ``eval.knn_temperature``): top1,
    top5; and from the same neighbours the retrieval scores recall@1, recall@5, map@r (`retrieval`)."""
    sims, _, labels = knn_candidates(train_x, train_y, test_x, k=max(1, config.knn_k), device=device)
    scores = accuracy_scores(knn_votes(sims, labels, num_classes, config.knn_temperature), test_y, num_classes)
    counts = torch.bincount(train_y, minlength=num_classes)
    return {**scores, **retrieval_scores(labels, test_y, counts)}


def linear(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
           num_classes: int, config, seed: int = 0, device: torch.device | str | None = None) -> dict[str, float]:
    """Logistic regression on standardised features (``eval.linear_*``; the solver by size or
    ``eval.linear_solver``): top1, top5, weight_decay."""
    return linear_probe(train_x, train_y, test_x, test_y, num_classes=num_classes,
                        weight_decay=config.linear_weight_decay, max_iter=config.linear_max_iter, seed=seed,
                        solver=getattr(config, "linear_solver", "auto"), device=device)


knn.needs_labels = True  # type: ignore[attr-defined]
linear.needs_labels = True  # type: ignore[attr-defined]
#: The built-in protocols (registered under ``protocols``; used when no registries are given).
BUILTIN = {"knn": knn, "linear": linear}


def needs_labels(protocol) -> bool:
    """Whether ``protocol`` needs labelled data (its ``needs_labels``; True when it does not say)."""
    return bool(getattr(protocol, "needs_labels", True))


def _takes(protocol, keyword: str) -> bool:
    try:
        parameters = inspect.signature(protocol).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return False
    return keyword in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def score_features(
    train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor], protocols: list[str],
    config, num_classes: int, seed: int = 0, registries: Registries | None = None, device: torch.device | str | None = None,
) -> dict[str, float]:
    """``{<protocol>_<score>: value}`` of the protocols asked, in order (``registries``: where to find
    them; without, the built-ins; ``device``: given to the protocols that take it).  A protocol
    that fails is named with its plugin."""
    from contrastive.errors import EvaluationError

    (train_x, train_y), (test_x, test_y) = train, test
    keep_train, keep_test = train_y >= 0, test_y >= 0  # unlabeled samples take no part in labelled protocols
    labelled = (train_x[keep_train], train_y[keep_train], test_x[keep_test], test_y[keep_test])
    out: dict[str, float] = {}
    for name in protocols:
        protocol = registries.protocols.get(name) if registries is not None else BUILTIN[name]
        tensors = labelled if needs_labels(protocol) else (train_x, train_y, test_x, test_y)
        try:
            extra = {"device": device} if device is not None and _takes(protocol, "device") else {}
            scores = protocol(*tensors, num_classes=num_classes, config=config, seed=seed, **extra)
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
