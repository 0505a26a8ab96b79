"""Which labelled data an evaluation reads: the train/test splits of the training dataset (or the
recipe's ``eval.train_data``/``eval.test_data``), evaluation's centre crop, and :class:`EvalData`."""

from __future__ import annotations

import copy
import inspect
import typing
from dataclasses import dataclass
from typing import Any

import torch

from contrastive.errors import ContrastiveError, DataError, RecipeError
from contrastive.evaluation.features import EvalTransform
from contrastive.recipe import Component, Recipe


def _split_component(data: Component, registries, train: bool) -> Component | None:
    """The train or test split of the dataset ``data`` names, or None when it has no split argument."""
    factory = registries.datasets.get(data.name)
    params = inspect.signature(factory).parameters
    if "train" in params:
        return Component(data.name, {**data.args, "train": train})
    if "split" in params:
        from contrastive.typecheck import type_hints

        choices = typing.get_args(type_hints(factory).get("split"))
        wanted = ["train"] if train else ["test", "val"]
        for split in wanted:
            if not choices or split in choices:
                return Component(data.name, {**data.args, "split": split})
    return None


def eval_crop(component: Component, registries, *, force: bool) -> Component:
    """Evaluation's standard preprocessing for datasets with a ``crop`` argument (``image_folder``,
    ``imagenet``): ``crop: center`` (the undistorted centre square), not training's squashed whole
    image.  ``force``: also replace a ``crop`` given (data derived from the training dataset's
    args); otherwise only fill it in when absent (eval data the user named explicitly)."""
    try:
        params = inspect.signature(registries.datasets.get(component.name)).parameters
    except (ContrastiveError, TypeError, ValueError):  # an unknown name is reported where the data is built
        return component
    if "crop" in params and (force or "crop" not in component.args):
        component.args["crop"] = "center"
    return component


def eval_data_components(recipe: Recipe, registries) -> tuple[Component, Component]:
    """The labelled (train, test) data of the evaluation: ``eval.train_data``/``eval.test_data``, or
    else the training dataset with ``train: true/false`` or ``split: train/test`` (``val``).
    Datasets with a ``crop`` argument get ``crop: center`` (:func:`eval_crop`)."""
    found = []
    for key, train in (("train_data", True), ("test_data", False)):
        given = getattr(recipe.eval, key)
        component = copy.deepcopy(given) if given is not None else _split_component(recipe.data, registries, train)
        if component is not None:
            component = eval_crop(component, registries, force=given is None)
        if component is None:
            raise RecipeError(
                f"eval: cannot derive labelled {'train' if train else 'test'} data from dataset '{recipe.data.name}' "
                f"(it has no train/split argument); set eval.train_data and eval.test_data, e.g. "
                f"--eval.test_data.name image_folder --eval.test_data.args.root PATH, or turn evaluation off "
                f"with --eval.protocols '[]'"
            )
        found.append(component)
    return found[0], found[1]


def build_dataset(component: Component, registries, what: str):
    try:
        return registries.datasets.build(component.name, **component.args)
    except ContrastiveError as exc:
        raise type(exc)(f"{what}: {exc}") from exc


def _labelled(dataset, what: str) -> torch.Tensor:
    labels = torch.as_tensor(getattr(dataset, "labels", [dataset[i][1] for i in range(len(dataset))]))
    if not getattr(dataset, "has_labels", True) or not bool((labels >= 0).any()):
        raise DataError(f"{what} has no labels; kNN and the linear probe need labelled data (set eval.train_data/test_data)")
    return labels


@dataclass
class EvalData:
    """The labelled train/test datasets of an evaluation and how their images are prepared."""

    train: Any
    test: Any
    train_component: Component
    test_component: Component
    transform: EvalTransform
    num_classes: int

    @classmethod
    def from_recipe(cls, recipe: Recipe, registries) -> EvalData:
        train_c, test_c = eval_data_components(recipe, registries)
        train = build_dataset(train_c, registries, "eval.train_data")
        test = build_dataset(test_c, registries, "eval.test_data")
        train_y, test_y = _labelled(train, f"eval.train_data ({train_c.name})"), _labelled(test, f"eval.test_data ({test_c.name})")
        classes = getattr(train, "classes", None)
        num_classes = max(len(classes) if classes else 0, int(train_y.max()) + 1, int(test_y.max()) + 1)
        transform = EvalTransform.from_recipe(recipe, registries, train[0][0])
        return cls(train, test, train_c, test_c, transform, num_classes)
