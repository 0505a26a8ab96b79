"""Evaluation of a learned representation: weighted kNN and a linear probe on frozen features.

Features are extracted once per backbone by :func:`extract_features` (the one "images ->
features" path, shared by ``fit``'s final evaluation and online monitor, ``contrastive eval`` and
``contrastive embed``): the backbone in eval mode under ``torch.no_grad()``, no augmentation —
uint8 / 255, grayscale repeated to 3 channels when the backbone wants 3, a resize to the
training view size when the images differ from it, and the recipe's ``normalize`` step if it has
one (:class:`EvalTransform`).  Then

- :func:`knn_classify`: weighted kNN of Wu et al. (2018), as in solo-learn and lightly: cosine
  similarity, the ``k`` = 200 nearest training features vote for their class with weight
  ``exp(sim / T)``, T = 0.1; the similarity matrix is computed in chunks of bounded memory;
- :func:`linear_probe`: multinomial logistic regression on standardised features (mean/std
  fitted on the training features), full-batch L-BFGS with an L2 penalty — the protocol of the
  SimCLR paper's transfer experiments (appendix B.8) — with the penalty picked from a small grid
  on a held-out 10% of the training features unless the recipe fixes it.  Only the classifier's
  own weights are optimised; the backbone is never in the optimiser's reach.

:func:`evaluate` scores a backbone with both protocols beside the baselines (the same
architecture freshly initialised with the recipe's seed, and raw pixels) and returns the
``eval`` entry of ``results.json``.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from contrastive.errors import ContrastiveError, DataError, RecipeError
from contrastive.recipe import Component, Recipe
from contrastive.views import match_channels

#: L2 penalties tried by ``linear_weight_decay: auto`` (mean cross entropy + wd/2·‖W‖²).
WEIGHT_DECAY_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
#: Bound on the elements of one chunk of the (test × train) similarity matrix (64 MiB in fp32).
KNN_CHUNK_ELEMENTS = 2**24
BASELINE_LABELS = {"learned": "learned", "random_init": "random init", "raw_pixels": "raw pixels"}


class EvaluationError(ContrastiveError):
    """A run directory or evaluation data that cannot be used (the CLI exits 2)."""


# -- which data --------------------------------------------------------------------------------
def _split_component(data: Component, registries, train: bool) -> Component | None:
    """The train or test split of the dataset ``data`` names, or None when it has no split argument."""
    factory = registries.datasets.get(data.name)
    params = inspect.signature(factory).parameters
    if "train" in params:
        return Component(data.name, {**data.args, "train": train})
    if "split" in params:
        from contrastive.registry import _type_hints

        choices = typing.get_args(_type_hints(factory).get("split"))
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


# -- images -> features ------------------------------------------------------------------------
class EvalTransform:
    """Deterministic eval preprocessing: ``(B, C, H, W)`` uint8 -> float ready for the backbone."""

    def __init__(self, in_chans: int, size: tuple[int, int] | None, normalize: nn.Module | None = None) -> None:
        self.in_chans = in_chans
        self.size = tuple(size) if size is not None else None
        self.normalize = normalize

    @classmethod
    def from_recipe(cls, recipe: Recipe, registries, sample: torch.Tensor) -> EvalTransform:
        """``size``: what the recipe's view pipeline makes of ``sample`` (a ``(C, H, W)`` image);
        ``normalize``: the recipe's ``normalize`` step, if any.  The global RNG is left untouched."""
        from contrastive.views import ViewPipeline

        in_chans = recipe.backbone_in_chans
        steps = [registries.augmentations.build(a.name, **a.args) for a in recipe.augmentation]
        x = match_channels(sample[None], in_chans)
        with torch.random.fork_rng(devices=[]):
            size = tuple(ViewPipeline(steps)(x).shape[-2:])
        norms = [s for a, s in zip(recipe.augmentation, steps, strict=True) if a.name == "normalize"]
        return cls(in_chans, size, norms[-1] if norms else None)

    def __call__(self, images: torch.Tensor, *, backbone_input: bool = True) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
        if not backbone_input:  # raw pixels: no channel repeat, no normalisation
            return x
        x = match_channels(x, self.in_chans)
        if self.normalize is not None:
            x = self.normalize(x)
        return x


def _batches(dataset, batch_size: int, indices: list[int] | None = None):
    """``(images uint8 (B,C,H,W), labels (B,))`` in order, without a DataLoader (no RNG use)."""
    order = indices if indices is not None else range(len(dataset))
    images_attr = getattr(dataset, "images", None)
    for start in range(0, len(order), batch_size):
        idx = list(order[start : start + batch_size])
        if isinstance(images_attr, torch.Tensor) and hasattr(dataset, "labels"):
            yield images_attr[idx], torch.as_tensor(dataset.labels)[idx]
        else:
            items = [dataset[i] for i in idx]
            yield torch.stack([im for im, _ in items]), torch.as_tensor([int(y) for _, y in items])


@torch.no_grad()
def extract_features(
    backbone: nn.Module | None,
    dataset,
    transform: EvalTransform,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    indices: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen features ``(N, num_features)`` float32 and labels ``(N,)`` int64 on the CPU.

    ``backbone=None`` gives the raw-pixel baseline: the flattened preprocessed pixels.  The
    backbone runs in eval mode and is put back in the mode it was in; nothing is trained.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    was_training = backbone.training if backbone is not None else False
    if backbone is not None:
        backbone.eval()
    feats, labels = [], []
    try:
        for images, y in _batches(dataset, batch_size, indices):
            x = transform(images.to(device), backbone_input=backbone is not None)
            out = backbone(x) if backbone is not None else x.flatten(1)
            feats.append(out.float().cpu())
            labels.append(y.long())
    finally:
        if backbone is not None:
            backbone.train(was_training)
    if not feats:
        raise DataError("evaluation data is empty")
    return torch.cat(feats), torch.cat(labels)


# -- protocols ---------------------------------------------------------------------------------
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


def score_features(
    train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor], protocols: list[str],
    config, num_classes: int, seed: int = 0,
) -> dict[str, float]:
    """``{knn_top1, knn_top5, linear_top1, linear_top5}`` for the protocols asked (eval config ``config``)."""
    (train_x, train_y), (test_x, test_y) = train, test
    keep_train, keep_test = train_y >= 0, test_y >= 0  # unlabeled samples take no part
    train_x, train_y, test_x, test_y = train_x[keep_train], train_y[keep_train], test_x[keep_test], test_y[keep_test]
    out: dict[str, float] = {}
    if "knn" in protocols:
        scores = knn_classify(train_x, train_y, test_x, test_y, num_classes=num_classes,
                              k=config.knn_k, temperature=config.knn_temperature)
        out.update({f"knn_{key}": value for key, value in scores.items()})
    if "linear" in protocols:
        scores = linear_probe(train_x, train_y, test_x, test_y, num_classes=num_classes,
                              weight_decay=config.linear_weight_decay, max_iter=config.linear_max_iter, seed=seed)
        out.update({f"linear_{key}": value for key, value in scores.items()})
    return out


# -- whole evaluations -------------------------------------------------------------------------
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


# -- finished runs -----------------------------------------------------------------------------
def load_run(run_dir: str | Path, registries, overrides: list[str] | None = None) -> tuple[Recipe, nn.Module]:
    """The recipe of a finished run (``config.yaml``, with ``--key value`` overrides) and its
    backbone with the weights of ``backbone.safetensors`` (read with safetensors, no pickle)."""
    import yaml
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from contrastive import recipe as recipes

    run = Path(run_dir)
    hint = "pass the trainer.output_dir of a finished run (it holds config.yaml and backbone.safetensors)"
    if not run.is_dir():
        raise EvaluationError(f"run directory '{run}' does not exist; {hint}")
    config_path, weights = run / "config.yaml", run / "backbone.safetensors"
    for path in (config_path, weights):
        if not path.is_file():
            extra = " (the run has not finished: resume it with contrastive fit --trainer.resume true)" if (run / "checkpoints").is_dir() else ""
            raise EvaluationError(f"'{run}' has no {path.name}{extra}; {hint}")
    try:
        raw = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise EvaluationError(f"{config_path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise EvaluationError(f"{config_path} is not a recipe mapping")
    raw = {k: v for k, v in raw.items() if k not in ("plugins", "versions")}
    raw = recipes.apply_overrides(raw, recipes.parse_overrides(list(overrides or [])))
    try:
        recipe = recipes.validate(raw, registries)
    except RecipeError as exc:
        raise RecipeError(f"{config_path}: {exc}") from exc
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise EvaluationError(f"cannot read {weights}: {exc}; it is damaged — re-run or restore it") from exc
    backbone = registries.backbones.build(recipe.backbone.name, **recipe.backbone.args)
    try:
        backbone.load_state_dict(state)
    except RuntimeError as first:
        # a fixed-input-size model (ViT ...) that fit rebuilt with img_size = the view size
        try:
            size = _view_size_from_recipe(recipe, registries)
            backbone = registries.backbones.build(recipe.backbone.name, **recipe.backbone.args, img_size=size)
            backbone.load_state_dict(state)
        except Exception:
            raise EvaluationError(
                f"{weights} does not fit backbone '{recipe.backbone.name}' built from {config_path}: {first}"
            ) from first
    backbone.eval()
    return recipe, backbone


def _view_size_from_recipe(recipe: Recipe, registries) -> tuple[int, int]:
    for a in recipe.augmentation:
        if "size" in a.args:
            size = a.args["size"]
            return (size, size) if isinstance(size, int) else tuple(size)
    raise EvaluationError("cannot tell the view size from the recipe's augmentation")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def embed_component(recipe: Recipe, registries, split: str, data_overrides: dict[str, Any] | None = None) -> Component:
    """The data ``contrastive embed`` reads: the recipe's ``split`` data, changed by ``--data.*``."""
    overrides = dict(data_overrides or {})
    name = overrides.get("name")
    if name is not None and name != recipe.data.name:  # crop: center unless --data.args.crop says otherwise
        return eval_crop(Component(name, dict(overrides.get("args") or {})), registries, force=False)
    if split == "train" and recipe.eval.train_data is None and _split_component(recipe.data, registries, True) is None:
        base = eval_crop(copy.deepcopy(recipe.data), registries, force=True)  # no train split: the training data
    else:
        train_c, test_c = eval_data_components(recipe, registries)
        base = train_c if split == "train" else test_c
    base.args.update(overrides.get("args") or {})
    return base


def embed(
    run_dir: str | Path, out: str | Path, registries, *, split: str = "test", data_overrides: list[str] | None = None,
    batch_size: int | None = None, device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Write the frozen features of a run's backbone on some data to ``out`` (``.npz``):
    ``embeddings`` (N × num_features float32), ``labels`` (N,) int64 (−1: none), ``paths`` for
    file-based data, ``classes`` when the data has them."""
    from contrastive import recipe as recipes

    if split not in ("train", "test"):
        raise EvaluationError(f"--split must be train or test, got {split!r}")
    pairs = recipes.parse_overrides(list(data_overrides or []))
    for key, _ in pairs:
        if key.split(".")[0] != "data":
            raise EvaluationError(f"embed takes --data.* overrides only, got --{key}")
    data_dict = recipes.apply_overrides({"data": {}}, pairs)["data"]
    recipe, backbone = load_run(run_dir, registries)
    component = embed_component(recipe, registries, split, data_dict)
    try:
        registries.datasets.check_args(component.name, component.args)
    except ContrastiveError as exc:
        raise RecipeError(f"data: {exc}") from exc
    dataset = build_dataset(component, registries, "data")
    device = torch.device(device) if device is not None else default_device()
    transform = EvalTransform.from_recipe(recipe, registries, dataset[0][0])
    feats, labels = extract_features(backbone.to(device), dataset, transform,
                                     batch_size=batch_size or recipe.eval.batch_size, device=device)
    out = Path(out)
    if out.suffix != ".npz":
        out = out.with_name(out.name + ".npz")
    arrays: dict[str, np.ndarray] = {"embeddings": feats.numpy().astype(np.float32), "labels": labels.numpy().astype(np.int64)}
    if getattr(dataset, "paths", None) is not None:
        arrays["paths"] = np.asarray([str(p) for p in dataset.paths])
    if getattr(dataset, "classes", None):
        arrays["classes"] = np.asarray(list(dataset.classes))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, **arrays)
    except OSError as exc:
        raise EvaluationError(f"cannot write {out}: {exc.strerror or exc}; pass another --out") from exc
    return {"out": str(out), "data": {"name": component.name, "args": component.args}, "shape": list(feats.shape)}
