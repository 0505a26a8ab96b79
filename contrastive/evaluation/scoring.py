"""Whole evaluations of a backbone: [`evaluate`][contrastive.evaluation.scoring.evaluate] (the learned backbone beside the random-init and
raw-pixel baselines, the ``eval`` entry of ``results.json``: kNN and the linear probe, or the
label-free metrics on unlabelled data), [`format_table`][contrastive.evaluation.scoring.format_table] and the online [`KNNMonitor`][contrastive.evaluation.scoring.KNNMonitor]."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from contrastive.distributed import barrier
from contrastive.evaluation.data import EvalData, describe, resolve_protocols
from contrastive.evaluation.features import ViewTransform, extract_features
from contrastive.evaluation.image_protocols import needs_images, score_images
from contrastive.evaluation.label_free import alignment, effective_rank, uniformity
from contrastive.evaluation.protocols import score_features
from contrastive.recipe import EVAL_PROTOCOLS, SUPERVISED_PROTOCOLS, Component, Recipe

if TYPE_CHECKING:
    from contrastive.registry import Registries

BASELINE_LABELS = {"learned": "learned", "random_init": "random init", "raw_pixels": "raw pixels"}


def random_init_backbone(recipe: Recipe, registries: Registries, like: nn.Module | None = None,
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
    registries: Registries,
    *,
    protocols: list[str] | str | None = None,
    baselines: list[str] | None = None,
    data: EvalData | None = None,
    device: torch.device | str | None = None,
    plan=None,
    group=None,
) -> dict[str, Any]:
    """Score the frozen ``backbone`` (and the baselines) on the recipe's eval data; the
    ``eval`` entry of ``results.json``.  ``protocols`` (default: ``eval.protocols``) as
    [`resolve_protocols`][contrastive.evaluation.data.resolve_protocols] resolves them: ``auto`` runs kNN and
    the linear probe on labelled data and the label-free metrics on data without labels.  ``plan``:
    the run's `RunPlan` (from `open_run`; None: computed from the recipe).  ``group``
    ([`evaluation_group`][contrastive.distributed.evaluation_group]; None: this process alone): every
    process of it calls this with the same arguments, extracts its shard of the features
    ([`extract_features`][contrastive.evaluation.features.extract_features]), runs the protocols on
    all of them (the same scores everywhere) and returns once every process is done (a barrier of
    ``group``)."""
    started = time.perf_counter()
    config = recipe.eval
    requested = config.protocols if protocols is None else protocols
    baselines = list(config.baselines if baselines is None else baselines)
    data = data or EvalData.from_recipe(recipe, registries, plan)
    protocols = resolve_protocols(requested, data.unlabelled, registries)
    device = torch.device(device) if device is not None else next(backbone.parameters()).device
    views = ViewTransform.from_recipe(recipe, registries, data.transform.size) if "label_free" in protocols else None
    kwargs = {"batch_size": config.batch_size, "device": device, "group": group}
    on_images = [p for p in protocols if p != "label_free" and needs_images(registries.protocols.get(p))]
    precision = plan.precision if plan is not None else (recipe.trainer.mixed_precision or "no")

    def score(model) -> dict[str, float]:
        test = extract_features(model, data.test, data.transform, **kwargs)
        out: dict[str, float] = {}
        # the `protocols` kind: knn, linear, plugins' on features; linear_augmented, finetune on images
        frozen = [p for p in protocols if p != "label_free" and p not in on_images]
        if frozen:
            train = extract_features(model, data.train, data.transform, **kwargs)
            out.update(score_features(train, test, frozen, config, data.num_classes, recipe.seed, registries, device=device))
        if views is not None:
            view_a, view_b = (extract_features(model, data.test, views.seeded(recipe.seed + k), **kwargs)[0] for k in (0, 1))
            out.update(label_free_scores(test[0], view_a, view_b))
        else:  # a collapsed representation shows here before its kNN falls
            out["effective_rank"] = effective_rank(test[0])
        if on_images and model is not None:  # raw pixels: no backbone to train through
            out.update(score_images(model, data, on_images, config, recipe.seed, registries, device=device,
                                    precision=precision, group=group))
        return out

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
    if data.holdout is not None:
        results["holdout"] = data.holdout
    if requested == "auto" and data.unlabelled is not None:
        results["skipped"] = {"protocols": list(SUPERVISED_PROTOCOLS), "reason": data.unlabelled}
    barrier(group)  # no process goes back to training (its shorter timeout) while another still scores
    return results


def label_free_scores(features: torch.Tensor, view_a: torch.Tensor, view_b: torch.Tensor) -> dict[str, float]:
    """``alignment`` of the features of two augmented views ``(N, D)`` each; ``uniformity`` and
    ``effective_rank`` of the (un-augmented) ``features`` ``(N, D)`` (`label_free`)."""
    out = {"alignment": alignment(view_a, view_b), "effective_rank": effective_rank(features)}
    out["uniformity"] = uniformity(features) if features.shape[0] >= 2 else math.nan
    return out


COLUMNS = (
    ("knn_top1", "kNN top-1"), ("knn_top5", "kNN top-5"), ("linear_top1", "linear top-1"), ("linear_top5", "linear top-5"),
    ("linear_augmented_top1", "lin. aug. top-1"), ("linear_augmented_top5", "lin. aug. top-5"),
    ("finetune_top1", "finetune top-1"), ("finetune_top5", "finetune top-5"),
    ("alignment", "alignment"), ("uniformity", "uniformity"), ("effective_rank", "eff. rank"),
)


def score_columns(results: dict[str, Any]) -> list[tuple[str, str]]:
    """``(key, title)`` of every score of an evaluation: the built-in ones (`COLUMNS`) present,
    then each other protocol's (a plugin's) ``<protocol>_<score>`` keys, titled by key."""
    known = [(key, title) for key, title in COLUMNS if key in results]
    taken = {key for key, _ in COLUMNS}
    for name in results.get("protocols", []):
        if name not in EVAL_PROTOCOLS:
            known += [(key, key) for key, value in results.items()
                      if key.startswith(f"{name}_") and key not in taken and isinstance(value, (int, float))]
    return known


def format_table(results: dict[str, Any]) -> str:
    """The learned backbone vs the baselines, one row each, one column per score."""
    columns = score_columns(results)
    rows = [("learned", results)] + [(BASELINE_LABELS.get(k, k), v) for k, v in results.get("baselines", {}).items()]
    widths = [max(14, len(title) + 1) for _, title in columns]  # a plugin's score may have a long name
    header = f"{'':14s}" + "".join(f"{title:>{w}s}" for (_, title), w in zip(columns, widths, strict=True))
    lines = [header] + [f"{label:14s}" + "".join(f"{row.get(key, math.nan):{w}.4f}" for (key, _), w in zip(columns, widths, strict=True))
                        for label, row in rows]
    test = results["test_data"]
    name = describe(Component(test["name"], dict(test.get("args") or {})))
    kind = "held-out" if results.get("holdout") else "test"
    if any(p != "label_free" for p in results.get("protocols", SUPERVISED_PROTOCOLS)):
        where = f"{name}: {results['num_train']} train / {results['num_test']} {kind} images"
    else:  # label-free metrics only: the test images alone are read
        where = f"{name}: {results['num_test']} {kind} images"
    frozen = "frozen features" + (", fine-tuned copies" if "finetune" in results.get("protocols", ()) else "")
    lines = [f"evaluation ({where}, {frozen})"] + lines
    if results.get("skipped"):
        lines.append(f"(kNN and linear probe skipped: {results['skipped']['reason']})")
    return "\n".join(lines)


class KNNMonitor:
    """The online kNN of ``eval.monitor_every``: the same protocol on (a fixed subset of) the eval
    data, plus the effective rank of the test features (the same subset).  ``group``: as for
    [`evaluate`][contrastive.evaluation.scoring.evaluate], every process of it calls the monitor together."""

    def __init__(self, recipe: Recipe, registries: Registries, device: torch.device | str, data: EvalData | None = None,
                 plan=None, group=None) -> None:
        self.recipe, self.device, self.group = recipe, device, group
        self.data = data or EvalData.from_recipe(recipe, registries, plan)
        cap = recipe.eval.monitor_max_samples
        generator = torch.Generator().manual_seed(recipe.seed)

        def subset(dataset):
            if cap is None or len(dataset) <= cap:
                return None
            return sorted(torch.randperm(len(dataset), generator=generator)[:cap].tolist())

        self.train_idx, self.test_idx = subset(self.data.train), subset(self.data.test)
        self.last_test: tuple[torch.Tensor, torch.Tensor] | None = None  # (features, labels) of the last call

    def __call__(self, backbone: nn.Module) -> dict[str, float]:
        kwargs = {"batch_size": self.recipe.eval.batch_size, "device": self.device, "group": self.group}
        train = extract_features(backbone, self.data.train, self.data.transform, indices=self.train_idx, **kwargs)
        test = extract_features(backbone, self.data.test, self.data.transform, indices=self.test_idx, **kwargs)
        self.last_test = test  # the online linear probe scores the same features
        scores = score_features(train, test, ["knn"], self.recipe.eval, self.data.num_classes, device=self.device)
        scores = {**scores, "effective_rank": effective_rank(test[0])}
        barrier(self.group)
        return scores

    @classmethod
    def start(cls, recipe: Recipe, registries: Registries, device: torch.device | str, plan=None,
              group=None) -> KNNMonitor | None:
        """The monitor, or None when its eval data has no labels ([`plan_eval`][contrastive.evaluation.data.plan_eval] has
        said so in a note before training)."""
        if plan is not None and not plan.monitor:
            return None
        data = EvalData.from_recipe(recipe, registries, plan)
        return None if data.unlabelled is not None else cls(recipe, registries, device, data, group=group)
