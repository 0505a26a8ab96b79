"""Which data an evaluation reads: the train/test splits of the training dataset, the recipe's
``eval.train_data``/``eval.test_data``, or — for data without a test split of its own (an image
folder) — a seeded, stratified held-out part of the training data (``eval.holdout``); evaluation's
centre crop; which protocols run on it ([`resolve_protocols`][contrastive.evaluation.data.resolve_protocols]); [`EvalData`][contrastive.evaluation.data.EvalData]; and the
checks ``contrastive check`` and ``fit`` run before anything heavy ([`plan_eval`][contrastive.evaluation.data.plan_eval]).

Streamed training data (``webdataset``; a dataset factory with an ``in_memory`` argument) is read
by evaluation with ``in_memory: true`` (a map-style copy; ``webdataset`` caps it at
``in_memory_samples``).  Its test data is what the factory's ``test_split(args)`` names (the
test shards); nothing is held out of a stream, so without test data (and no ``eval.test_data``)
evaluation is switched off with a note (`NO_STREAM_TEST_DATA`)."""

from __future__ import annotations

import copy
import inspect
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from contrastive.components.datasets.contract import dataset_info
from contrastive.components.datasets.stream import is_stream
from contrastive.errors import ContrastiveError, DataError
from contrastive.evaluation.features import EvalTransform
from contrastive.evaluation.holdout import split_indices, subset
from contrastive.recipe import SUPERVISED_PROTOCOLS, Component, Recipe

if TYPE_CHECKING:
    from contrastive.registry import Registries

LABEL_FREE_WORDS = "label-free metrics (alignment, uniformity, effective rank)"


#: Why a stream without test data gets no evaluation, and the fixes.
NO_STREAM_TEST_DATA = (
    "{data} streams and has no test data (nothing can be held out of a stream); write test shards with "
    "`contrastive shard FOLDER OUT/ --holdout 0.1`, or name them with --data.args.test_urls PATTERN or "
    "--eval.test_data.name/--eval.test_data.args"
)


def _split_component(data: Component, registries: Registries, train: bool) -> Component | None:
    """The train or test split of the dataset ``data`` names, or None when it has none (no
    ``train``/``split`` argument, or a factory with ``derive_eval_splits = False``).  A factory
    with a ``test_split(args)`` attribute names its test data itself (``webdataset``: its test
    shards; None: none) and has no separate train split (evaluation's is the training data)."""
    factory = registries.datasets.get(data.name)
    test_split = getattr(factory, "test_split", None)
    if callable(test_split):
        args = None if train else test_split(dict(data.args))
        return None if args is None else Component(data.name, args)
    if getattr(factory, "derive_eval_splits", True) is False:
        return None
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


def _params(name: str, registries: Registries) -> dict:
    try:
        return dict(inspect.signature(registries.datasets.get(name)).parameters)
    except (ContrastiveError, TypeError, ValueError):  # an unknown name is reported where the data is built
        return {}


def eval_crop(component: Component, registries: Registries, *, force: bool) -> Component:
    """Evaluation's standard preprocessing for datasets with a ``crop`` argument (``image_folder``,
    ``imagenet``, ``hf_dataset``, ``webdataset``): ``crop: center`` (the undistorted centre square),
    not training's squashed whole image; and datasets with an ``in_memory`` argument (streams:
    ``webdataset``) are read with ``in_memory: true``, as evaluation reads images by index.
    ``force``: also replace a value given (data derived from the training dataset's args);
    otherwise only fill them in when absent (eval data the user named explicitly)."""
    params = _params(component.name, registries)
    for key, value in (("crop", "center"), ("in_memory", True)):
        if key in params and (force or key not in component.args):
            component.args[key] = value
    return component


def streams(data: Component, registries: Registries) -> bool:
    """Whether ``data`` is read as a stream (a factory with an ``in_memory`` argument, not set)."""
    return "in_memory" in _params(data.name, registries) and not data.args.get("in_memory")


def no_test_data(recipe: Recipe, registries: Registries) -> str | None:
    """Why evaluation has no test data (streamed training data without test data of its own and no
    ``eval.test_data``), or None when it has some."""
    if recipe.eval.test_data is not None or not streams(recipe.data, registries):
        return None
    if _split_component(recipe.data, registries, False) is not None:
        return None
    return NO_STREAM_TEST_DATA.format(data=describe(recipe.data))


def evaluation_on(recipe: Recipe) -> bool:
    """Whether fit evaluates at all: a final evaluation (``eval.protocols`` not ``[]``) or the monitor."""
    return recipe.eval.protocols != [] or recipe.eval.monitor_every > 0


def holdout_applies(recipe: Recipe, registries: Registries) -> bool:
    """Whether evaluation holds out part of the training data (``eval.holdout``): evaluation is on,
    no ``eval.test_data`` is named and the training dataset has no test split of its own (and is
    not a stream: nothing is held out of one)."""
    return (evaluation_on(recipe) and recipe.eval.test_data is None and not streams(recipe.data, registries)
            and _split_component(recipe.data, registries, False) is None)


def eval_data_components(recipe: Recipe, registries: Registries) -> tuple[Component, Component]:
    """The (train, test) data of the evaluation: ``eval.train_data``/``eval.test_data``, or else the
    training dataset with ``train: true/false`` or ``split: train/test`` (``val``), or else the
    training dataset itself (of which [`EvalData`][contrastive.evaluation.data.EvalData] takes the held-out split as test data and
    the rest as train data when `holdout_applies`).  Datasets with a ``crop`` argument get
    ``crop: center`` ([`eval_crop`][contrastive.evaluation.data.eval_crop])."""
    found = []
    for key, train in (("train_data", True), ("test_data", False)):
        given = getattr(recipe.eval, key)
        if given is not None:
            component = copy.deepcopy(given)
        else:
            component = _split_component(recipe.data, registries, train) or copy.deepcopy(recipe.data)
        found.append(eval_crop(component, registries, force=given is None))
    return found[0], found[1]


def build_dataset(component: Component, registries: Registries, what: str):
    """The evaluation dataset ``component`` names (map-style: evaluation reads images by index)."""
    try:
        dataset = registries.datasets.build(component.name, **component.args)
    except ContrastiveError as exc:
        raise type(exc)(f"{what}: {exc}") from exc
    if is_stream(dataset):
        raise DataError(f"{what}: {describe(component)} is a stream, and evaluation reads images by index; read it into "
                        f"memory (--data.args.in_memory true, or in_memory: true in eval.test_data.args)")
    return dataset


def describe(component: Component) -> str:
    """``name`` plus where it reads from (``image_folder /photos``), for messages."""
    where = next((component.args[k] for k in ("root", "path", "urls") if isinstance(component.args.get(k), str)), None)
    urls = component.args.get("urls")
    if where is None and isinstance(urls, list) and urls:
        where = str(urls[0]) + (f" (+{len(urls) - 1} more)" if len(urls) > 1 else "")
    return f"{component.name} {where}" if where else component.name


def all_labels(dataset) -> torch.Tensor:
    """``(N,)`` int64: the dataset's ``labels`` attribute, or (without one) every item's label."""
    labels = dataset_info(dataset).labels
    if labels is None:  # decodes every image: only datasets without a labels attribute get here
        labels = [dataset[i][1] for i in range(len(dataset))]
    return torch.as_tensor(labels, dtype=torch.int64)


def labels_missing(dataset, component: Component) -> str | None:
    """Why ``dataset`` cannot serve kNN / the linear probe (no labels), or None when it has labels.
    A stream has no ``labels``: its ``has_labels`` decides."""
    has_labels = dataset_info(dataset).has_labels
    if has_labels and is_stream(dataset):
        return None
    if has_labels and bool((all_labels(dataset) >= 0).any()):
        return None
    hint = dataset_info(dataset).labels_hint
    return f"{describe(component)} has no labels" + (f" ({hint})" if hint else "")


def holdout_split(recipe: Recipe, dataset, component: Component) -> tuple[list[int], list[int]]:
    """``(kept, held_out)`` indices of ``dataset`` (the training data) under ``eval.holdout``:
    stratified by class when it has labels, seeded with the recipe's ``seed``."""
    labels = all_labels(dataset)
    if not dataset_info(dataset).has_labels:
        labels = torch.full_like(labels, -1)
    return split_indices(labels, recipe.eval.holdout, recipe.seed, what=describe(component),
                         classes=dataset_info(dataset).classes)


def resolve_protocols(requested: list[str] | str, missing: str | None, registries: Registries | None=None) -> list[str]:
    """The protocols to run: ``auto`` is knn + linear on labelled data, ``label_free`` on data
    without labels (``missing``: why it has none, as `labels_missing` words it).  A list
    naming a protocol that needs labels (knn, linear, a plugin's that says so; ``registries``: where
    to look them up) on unlabelled data is a [`DataError`][contrastive.errors.DataError]."""
    if requested == "auto":
        return list(SUPERVISED_PROTOCOLS) if missing is None else ["label_free"]
    asked = [p for p in requested if _needs_labels(p, registries)]
    if asked and missing is not None:
        raise DataError(
            f"eval.protocols asks for {' and '.join(asked)}, which need labels, but {missing}; use --eval.protocols auto "
            f"({LABEL_FREE_WORDS} on unlabelled data), --eval.protocols '[label_free]', or give labelled data with "
            f"eval.train_data / eval.test_data"
        )
    return list(requested)


def _needs_labels(name: str, registries: Registries) -> bool:
    from contrastive.evaluation.protocols import needs_labels

    if registries is None or name == "label_free" or name not in registries.protocols:
        return name in SUPERVISED_PROTOCOLS
    return needs_labels(registries.protocols.get(name))


@dataclass
class EvalData:
    """The train/test datasets of an evaluation and how their images are prepared.

    ``unlabelled``: why kNN and the linear probe cannot run on them (None: both have labels);
    ``holdout``: the held-out split when the test data is one (``{"fraction", "in_training",
    "num_held_out", "num_kept"}``), else None."""

    train: Any
    test: Any
    train_component: Component
    test_component: Component
    transform: EvalTransform
    num_classes: int
    unlabelled: str | None = None
    holdout: dict[str, Any] | None = field(default=None)

    @classmethod
    def from_recipe(cls, recipe: Recipe, registries: Registries, plan=None) -> EvalData:
        """The recipe's evaluation data, prepared at the view size and with the normalisation of
        ``plan`` (the run's `RunPlan`, e.g. from
        `open_run`; None: the size is probed on the first test
        image)."""
        missing_test = no_test_data(recipe, registries)
        if missing_test:
            raise DataError(f"evaluation has no test data: {missing_test}")
        train_c, test_c = eval_data_components(recipe, registries)
        holdout = None
        if holdout_applies(recipe, registries):
            source = build_dataset(test_c, registries, "data (evaluation's held-out split)")
            kept, held = holdout_split(recipe, source, test_c)
            test = subset(source, held)
            train = build_dataset(train_c, registries, "eval.train_data") if recipe.eval.train_data else subset(source, kept)
            holdout = {"fraction": recipe.eval.holdout, "in_training": recipe.eval.holdout_in_training,
                       "num_held_out": len(held), "num_kept": len(kept)}
        else:
            train = build_dataset(train_c, registries, "eval.train_data")
            test = build_dataset(test_c, registries, "eval.test_data")
        unlabelled = labels_missing(train, train_c) or labels_missing(test, test_c)
        num_classes = 0
        if unlabelled is None:
            train_y, test_y = torch.as_tensor(train.labels), torch.as_tensor(test.labels)
            classes = getattr(train, "classes", None)
            num_classes = max(len(classes) if classes else 0, int(train_y.max()) + 1, int(test_y.max()) + 1)
        if plan is not None:
            transform = EvalTransform.from_plan(recipe, registries, plan)
        else:
            transform = EvalTransform.from_recipe(recipe, registries, test[0][0])
        return cls(train, test, train_c, test_c, transform, num_classes, unlabelled, holdout)


@dataclass
class EvalPlan:
    """What fit will evaluate, found before anything heavy is built ([`plan_eval`][contrastive.evaluation.data.plan_eval]).

    ``protocols``: those of the final evaluation ([]: none); ``monitor``: whether the online kNN
    runs; ``kept``: the training images pre-training uses when part is held out (None: all);
    ``notes``: one-line notes for the user; ``summary``: one line for ``contrastive check``;
    ``off``: evaluation cannot run at all (a stream without test data), so fit switches it off."""

    protocols: list[str]
    monitor: bool
    kept: list[int] | None
    notes: list[str]
    summary: str
    off: bool = False


def plan_eval(recipe: Recipe, registries: Registries, dataset=None) -> EvalPlan:
    """Check the evaluation set-up of ``recipe`` and say what will run; raises a one-line
    [`DataError`][contrastive.errors.DataError] / [`RecipeError`][contrastive.errors.RecipeError] for any problem (a held-out split that is empty or
    misses a class, knn / linear asked for on unlabelled data, eval data that cannot be read).

    Reads only what decides that: the training data's file list when evaluation uses it
    (``dataset``: the one fit has already built, else it is built here — for a folder a scan,
    nothing decoded) and the eval datasets the recipe names.  Splits derived from the training
    dataset (``train: false``, ``split: test``) are not read: their labels are assumed."""
    config = recipe.eval
    if not evaluation_on(recipe):
        return EvalPlan([], False, None, [], "eval OK: off (eval.protocols [] and eval.monitor_every 0)")
    train_c, test_c = eval_data_components(recipe, registries)

    def training_data():
        nonlocal dataset
        if dataset is None:
            dataset = registries.datasets.build(recipe.data.name, **recipe.data.args)
        return dataset

    def named(key: str, component: Component) -> str | None:
        return labels_missing(build_dataset(component, registries, f"eval.{key}"), component)

    missing_test = no_test_data(recipe, registries)
    if missing_test:
        training_data()  # the stream's own set-up (shards, sizes), checked all the same
        if config.protocols not in ("auto", []):
            raise DataError(f"eval.protocols asks for {', '.join(config.protocols)}, but {missing_test}")
        asked = "evaluation" + (f" (and the online kNN of eval.monitor_every {config.monitor_every})"
                                if config.monitor_every > 0 else "")
        return EvalPlan([], False, None, [f"{asked} skipped: {missing_test}"], "eval OK: off (no test data for a stream)",
                        off=True)

    notes: list[str] = []
    kept = None
    if holdout_applies(recipe, registries):
        source = training_data()
        kept, held = holdout_split(recipe, source, recipe.data)
        own = labels_missing(source, recipe.data)
        missing = (named("train_data", train_c) if config.train_data is not None else None) or own
        classes = getattr(source, "classes", None)
        how = f"stratified over {len(classes)} classes" if own is None and classes else "drawn at random"
        trained = "also" if config.holdout_in_training else "not"
        where = f"{len(held)} held-out of the {len(source)} images of {describe(recipe.data)}"
        details = (f"(eval.holdout {config.holdout:g}, {how}; {trained} pre-trained on: eval.holdout_in_training "
                   f"{str(config.holdout_in_training).lower()})")
        held_words = f"{len(held)} held-out images of the {len(source)} {details}"
        if missing is None or config.protocols != "auto":
            notes.append(f"evaluation holds out {len(held)} of the {len(source)} images {details}")
    else:
        held_words = None
        missing = None
        if config.train_data is not None:
            missing = named("train_data", train_c)
        elif _split_component(recipe.data, registries, True) is None:  # the training data itself
            missing = labels_missing(training_data(), recipe.data)
        if config.test_data is not None:
            test_missing = named("test_data", test_c)  # always read: an empty or missing folder is an error
            missing = missing or test_missing
        where = f"{describe(train_c)}{_args(train_c)} -> {describe(test_c)}{_args(test_c)}"
    protocols = [] if config.protocols == [] else resolve_protocols(config.protocols, missing, registries)
    if "label_free" in protocols and kept is not None and len(held) < 2:
        raise DataError(
            f"eval.holdout {config.holdout:g} holds out {len(held)} of the {len(dataset)} images of "
            f"{describe(recipe.data)}; uniformity needs at least 2: raise eval.holdout or add images"
        )
    if config.protocols == "auto" and missing is not None:
        of = held_words or "the evaluation images"
        notes.append(f"supervised evaluation (kNN, linear probe) skipped: {missing}; evaluation reports "
                     f"{LABEL_FREE_WORDS} of {of}")
    monitor = config.monitor_every > 0 and missing is None
    if config.monitor_every > 0 and missing is not None:
        notes.append(f"online kNN monitor (eval.monitor_every {config.monitor_every}) skipped: {missing}")
    runs = ", ".join(protocols) if protocols else "no final evaluation"
    return EvalPlan(protocols, monitor, kept, notes, f"eval OK: {runs}{' + online kNN' if monitor else ''} on {where}")


def _args(component: Component) -> str:
    shown = {k: v for k, v in component.args.items() if k in ("train", "split")}
    return " (" + ", ".join(f"{k}: {v}" for k, v in shown.items()) + ")" if shown else ""


def training_dataset(recipe: Recipe, registries: Registries):
    """The dataset fit pre-trains on: the recipe's ``data`` without evaluation's held-out images
    (unless ``eval.holdout_in_training``), after [`plan_eval`][contrastive.evaluation.data.plan_eval] has checked the evaluation
    set-up (so a bad one stops fit before training); its notes are printed.  The recipe is not
    changed: that evaluation cannot run (a stream without test data) is the run's plan's
    (`contrastive.plan.RunPlan.applied_to`)."""
    dataset = registries.datasets.build(recipe.data.name, **recipe.data.args)
    plan = plan_eval(recipe, registries, dataset)
    for note in plan.notes:
        print(f"note: {note}")
    if plan.kept is None or recipe.eval.holdout_in_training:
        return dataset
    return subset(dataset, plan.kept)
