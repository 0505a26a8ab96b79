"""Recipe -> the parts a run trains: dataset, views, and the method with its built parts.

The method gets, by parameter name, the parts its signature names (``backbone`` always;
``head``, ``loss``, ``predictor``), as pytest injects fixtures; the loop knows nothing else
about it.  Parts are built in a fixed order from the seeded global RNG (dataset, the run's plan —
whose view-size probe runs under ``fork_rng`` and draws nothing — backbone, head, loss,
predictor), so a seeded run is reproducible bit for bit.  Arguments that follow a schedule are
built with the schedule's value at step 0 (`contrastive.training.scheduled` sets them later).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from contrastive.components.augmentations.views import Views
from contrastive.components.datasets.contract import dataset_info
from contrastive.errors import ContrastiveError, DataError, RecipeError
from contrastive.evaluation.holdout import subset
from contrastive.methods.base import Method, check_method
from contrastive.plan import RunPlan, build_pipelines, compute_plan
from contrastive.recipe import Recipe, method_parts
from contrastive.recipe.scheduled import initial_args
from contrastive.training.data import check_labels

if TYPE_CHECKING:
    from contrastive.registry import Registries


@dataclass
class Parts:
    """Everything built from a recipe, before Accelerate wraps it."""

    dataset: Any
    views: Views
    method: Method
    in_chans: int
    plan: RunPlan  # the run's plan, computed before the backbone
    loss: nn.Module | None = None  # the loss handed to the method (None: it takes none); schedules set it


def build_parts(recipe: Recipe, registries: Registries, plan_args: dict[str, Any] | None = None) -> Parts:
    """The run's `RunPlan` (computed once, after the dataset and the view
    pipelines and before the backbone) and the dataset, views and method it says.  ``plan_args``:
    ``processes`` and ``precision`` for `compute_plan`.  ``recipe`` is not changed."""
    dataset = registries.datasets.build(recipe.data.name, **recipe.data.args)
    groups, pipelines = build_pipelines(recipe, registries)
    plan = compute_plan(recipe, registries, dataset=dataset, pipelines=pipelines, **(plan_args or {}))
    for note in plan.notes:
        print(f"note: {note}")
    if plan.kept is not None and not recipe.eval.holdout_in_training:  # without evaluation's held-out images
        dataset = subset(dataset, list(plan.kept))
    views = Views([(g.count, p) for g, p in zip(groups, pipelines, strict=True)])
    backbone = registries.backbones.build(recipe.backbone.name, **recipe.backbone.args)
    if not isinstance(getattr(backbone, "num_features", None), int):
        raise RecipeError(f"backbone '{recipe.backbone.name}' has no int attribute num_features (backbone contract)")
    in_chans = recipe.backbone_in_chans
    data_chans = int(dataset_info(dataset).num_channels or in_chans)
    if data_chans != in_chans and not (data_chans == 1 and in_chans == 3):
        raise DataError(
            f"dataset '{recipe.data.name}' has {data_chans}-channel images but the backbone expects "
            f"{in_chans}; set --backbone.args.in_chans {data_chans}"
        )
    backbone = fit_backbone_to_views(backbone, recipe, registries, in_chans, list(plan.view_sizes))
    method, loss = _build_method(recipe, registries, backbone)
    try:
        method.check_views(views.counts)
    except ContrastiveError as exc:
        raise RecipeError(f"method '{recipe.method.name}': {exc}") from exc
    if method.requires_labels:
        check_labels(dataset, recipe.data.name, recipe.method.name)
    if plan.accumulate > 1 and not method.replayable:
        raise RecipeError(
            f"method '{recipe.method.name}' cannot replay its forward pass, which trainer.accumulate "
            f"{plan.accumulate} (GradCache) needs; set --trainer.accumulate 1 and reach the batch with more processes"
        )
    return Parts(dataset, views, method, in_chans, plan, loss)


def _build_method(recipe: Recipe, registries: Registries, backbone: nn.Module) -> tuple[Method, nn.Module | None]:
    """The method and the loss it was given; scheduled arguments at their values of step 0."""
    name = recipe.method.name
    wanted = method_parts(registries.methods.get(name))
    for part in ("head", "loss"):
        given = getattr(recipe, part)
        if given is not None and part not in wanted:
            print(f"note: method '{name}' takes no {part}; the recipe's {part} '{given.name}' is not used")
    parts: dict[str, Any] = {"backbone": backbone}
    head = None
    if "head" in wanted and recipe.head is not None:
        head = parts["head"] = registries.heads.build(recipe.head.name, in_dim=backbone.num_features, **recipe.head.args)
    if "loss" in wanted and recipe.loss is not None:
        parts["loss"] = registries.losses.build(recipe.loss.name, **initial_args(recipe.loss.args))
    if "predictor" in wanted and recipe.predictor is not None:
        in_dim = getattr(head, "out_dim", None) if head is not None else backbone.num_features
        if not isinstance(in_dim, int):
            raise RecipeError(f"head '{recipe.head.name}' has no int attribute out_dim, which the predictor's in_dim needs")
        parts["predictor"] = registries.heads.build(recipe.predictor.name, in_dim=in_dim, **recipe.predictor.args)
    try:
        method = registries.methods.build(name, **initial_args(recipe.method.args), **parts)
    except ContrastiveError as exc:
        raise RecipeError(f"method: {exc}") from exc
    return check_method(method, name), parts.get("loss")


def fit_backbone_to_views(backbone, recipe: Recipe, registries: Registries, in_chans: int, sizes: list[tuple[int, int]]):
    """Check the backbone takes every view size (``sizes[0]``: the first group's); models built
    for a fixed input size (ViT, Swin, ...) are rebuilt with ``img_size`` set to the first group's
    size, so swapping a backbone by name needs no other change."""
    view_size = sizes[0]

    def features_of(model: nn.Module, size: tuple[int, int]) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(2, in_chans, *size))
        model.train()
        return out

    try:
        out = features_of(backbone, view_size)
    except Exception as first_error:
        if "img_size" in recipe.backbone.args:
            raise RecipeError(
                f"backbone '{recipe.backbone.name}' cannot take {in_chans}×{view_size[0]}×{view_size[1]} views: {first_error}"
            ) from first_error
        try:
            backbone = registries.backbones.build(recipe.backbone.name, **recipe.backbone.args, img_size=view_size)
            out = features_of(backbone, view_size)
        except Exception:
            raise RecipeError(
                f"backbone '{recipe.backbone.name}' cannot take the {in_chans}×{view_size[0]}×{view_size[1]} views "
                f"the augmentation makes: {first_error}"
            ) from first_error
        print(f"note: backbone '{recipe.backbone.name}' built with img_size={list(view_size)} to match the views")
    if tuple(out.shape) != (2, backbone.num_features):
        raise RecipeError(
            f"backbone '{recipe.backbone.name}' returned {tuple(out.shape)} for 2 views, not (2, num_features="
            f"{backbone.num_features}): a backbone must return pooled features (B, num_features)"
        )
    for group, size in enumerate(sizes[1:], start=1):
        if size == view_size:
            continue
        try:
            features_of(backbone, size)
        except Exception as exc:
            raise RecipeError(
                f"backbone '{recipe.backbone.name}' cannot take the {size[0]}×{size[1]} views of views.{group}: {exc} "
                f"(a fixed-size model needs e.g. --backbone.args.dynamic_img_size true, or one size for all groups)"
            ) from exc
    return backbone
