"""Whole evaluations of a backbone: :func:`evaluate` (the learned backbone beside the random-init and
raw-pixel baselines, the ``eval`` entry of ``results.json``), :func:`format_table` and the online
:class:`KNNMonitor`."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

from contrastive.evaluation.data import EvalData
from contrastive.evaluation.features import extract_features
from contrastive.evaluation.protocols import score_features
from contrastive.recipe import Recipe

BASELINE_LABELS = {"learned": "learned", "random_init": "random init", "raw_pixels": "raw pixels"}


def random_init_backbone(recipe: Recipe, registries, like: nn.Module | None = None,
                         view_size: tuple[int, int] | None = None) -> nn.Module:
    """The recipe's backbone architecture, freshly built with the recipe's seed (global RNG untouched).
    When ``like`` (the trained backbone) was rebuilt with ``img_size`` by fit, so is this one."""

    def shapes(model):
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        backbone = registries.backbones.build(recipe.backbone.name, **recipe.backbone.args)
        if like is not None and view_size is not None and shapes(backbone) != shapes(like):
            torch.manual_seed(recipe.seed)
            backbone = registries.backbones.build(recipe.backbone.name, **recipe.backbone.args, img_size=view_size)
    return backbone


def evaluate(
    backbone: nn.Module,
    recipe: Recipe,
    registries,
    *,
    protocols: list[str] | None = None,
    baselines: list[str] | None = None,
    data: EvalData | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Score the frozen ``backbone`` (and the baselines) on the recipe's eval data; the
    ``eval`` entry of ``results.json``."""
    started = time.perf_counter()
    config = recipe.eval
    protocols = list(config.protocols if protocols is None else protocols)
    baselines = list(config.baselines if baselines is None else baselines)
    data = data or EvalData.from_recipe(recipe, registries)
    device = torch.device(device) if device is not None else next(backbone.parameters()).device

    def features(model):
        kwargs = {"batch_size": config.batch_size, "device": device}
        return (extract_features(model, data.train, data.transform, **kwargs),
                extract_features(model, data.test, data.transform, **kwargs))

    def score(model) -> dict[str, float]:
        return score_features(*features(model), protocols, config, data.num_classes, recipe.seed)

    results: dict[str, Any] = score(backbone)
    results["baselines"] = {}
    for name in baselines:
        if name == "random_init":
            results["baselines"][name] = score(random_init_backbone(recipe, registries, backbone, data.transform.size).to(device))
        elif name == "raw_pixels":
            results["baselines"][name] = score(None)
    results.update({
        "protocols": protocols,
        "train_data": {"name": data.train_component.name, "args": data.train_component.args},
        "test_data": {"name": data.test_component.name, "args": data.test_component.args},
        "num_train": len(data.train),
        "num_test": len(data.test),
        "num_classes": data.num_classes,
        "image_size": list(data.transform.size) if data.transform.size else None,
        "knn": {"k": config.knn_k, "temperature": config.knn_temperature},
        "wall_time_s": time.perf_counter() - started,
    })
    return results


def format_table(results: dict[str, Any]) -> str:
    """The learned backbone vs the baselines, one row each, one column per protocol score."""
    columns = [(key, title) for key, title in (
        ("knn_top1", "kNN top-1"), ("knn_top5", "kNN top-5"), ("linear_top1", "linear top-1"), ("linear_top5", "linear top-5"),
    ) if key in results]
    rows = [("learned", results)] + [(BASELINE_LABELS.get(k, k), v) for k, v in results.get("baselines", {}).items()]
    header = f"{'':14s}" + "".join(f"{title:>14s}" for _, title in columns)
    lines = [header] + [f"{label:14s}" + "".join(f"{row.get(key, math.nan):14.4f}" for key, _ in columns) for label, row in rows]
    where = f"{results['test_data']['name']}: {results['num_train']} train / {results['num_test']} test images"
    return f"evaluation ({where}, frozen features)\n" + "\n".join(lines)


class KNNMonitor:
    """The online kNN of ``eval.monitor_every``: the same protocol on (a fixed subset of) the eval data."""

    def __init__(self, recipe: Recipe, registries, device: torch.device | str) -> None:
        self.recipe, self.device = recipe, device
        self.data = EvalData.from_recipe(recipe, registries)
        cap = recipe.eval.monitor_max_samples
        generator = torch.Generator().manual_seed(recipe.seed)

        def subset(dataset):
            if cap is None or len(dataset) <= cap:
                return None
            return sorted(torch.randperm(len(dataset), generator=generator)[:cap].tolist())

        self.train_idx, self.test_idx = subset(self.data.train), subset(self.data.test)

    def __call__(self, backbone: nn.Module) -> dict[str, float]:
        kwargs = {"batch_size": self.recipe.eval.batch_size, "device": self.device}
        train = extract_features(backbone, self.data.train, self.data.transform, indices=self.train_idx, **kwargs)
        test = extract_features(backbone, self.data.test, self.data.transform, indices=self.test_idx, **kwargs)
        return score_features(train, test, ["knn"], self.recipe.eval, self.data.num_classes)
