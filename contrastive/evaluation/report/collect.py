"""What a report shows, gathered from a run directory into plain arrays (`ReportData`).

Files: ``metrics.jsonl`` (training records: those with a ``loss``; evaluation records: the
online kNN's, without one), ``results.json`` (the final evaluation) and ``config.yaml``.  Then,
through the run-loading code of `runs` and the one feature path of
`features`: the frozen features of a seeded sample of the eval test
images (the 2-D map, the neighbour queries) and of the eval training images (the retrieval
gallery), and a few views of one training image drawn by the run's own view pipelines.

Every part whose input is missing (no metrics yet, no final evaluation, no backbone, no labels)
leaves a one-line note in `ReportData.notes` instead of failing.  The global RNGs are
left untouched: everything random here is seeded with the recipe's ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from contrastive.components.datasets.contract import dataset_info
from contrastive.errors import ContrastiveError, EvaluationError
from contrastive.storage.files import metric_records, read_json_object
from contrastive.storage.run_dir import RunDir

if TYPE_CHECKING:
    from contrastive.registry import Registries

#: Test images shown on the 2-D map (a seeded sample of larger sets).
MAP_POINTS = 2000
#: Above this many points the map is a PCA projection (t-SNE takes ~10 s for 2000 on one core).
TSNE_MAX_POINTS = 3000
#: Training images searched for neighbours (a seeded sample of larger sets).
GALLERY_MAX = 10000
QUERIES, NEIGHBOURS, VIEWS_PER_GROUP = 6, 6, 8
#: Keys of metrics.jsonl records that are axes, not series.
AXES = ("step", "epoch")


@dataclass
class Neighbours:
    """Query test images and their ``k`` nearest training images by cosine of frozen features.

    Images ``(H, W, C)`` float in [0, 1]; labels -1 where the data has none."""

    queries: list[np.ndarray]
    query_labels: list[int]
    images: list[list[np.ndarray]]  # [query][rank]
    labels: list[list[int]]
    cosines: list[list[float]]
    gallery_size: int
    labelled: bool


@dataclass
class ViewGroupPreview:
    """One view group: its title, the source image and views of it, ``(H, W, C)`` in [0, 1]."""

    title: str
    original: np.ndarray
    views: list[np.ndarray]
    aspect: float | None = None  # the source's width / height when the dataset squashes whole images


@dataclass
class ReportData:
    """Everything the page shows, in plain Python / numpy; ``notes[section]``: why a section is
    empty (sections: ``curves``, ``online_knn``, ``evaluation``, ``map``, ``neighbours``, ``views``)."""

    run: Path
    training: list[dict[str, Any]] = field(default_factory=list)
    evaluation_records: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    classes: list[str] | None = None
    map_coords: np.ndarray | None = None  # (n, 2)
    map_labels: np.ndarray | None = None  # (n,) int, -1: none
    map_method: str | None = None  # "t-SNE" or "PCA"
    map_total: int = 0  # test images the map's points were drawn from
    neighbours: Neighbours | None = None
    views: list[ViewGroupPreview] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)


def read_metrics(run: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(training, evaluation)`` records of ``run/metrics.jsonl``, each sorted by step; lines
    that are not JSON objects with an int ``step`` (a line cut by a kill) are skipped."""
    records = sorted((record for _, record in metric_records(RunDir(run).metrics)), key=lambda r: r["step"])
    return [r for r in records if "loss" in r], [r for r in records if "loss" not in r]


def numeric_keys(records: list[dict[str, Any]]) -> list[str]:
    """The keys holding numbers in any of ``records`` (``step``/``epoch`` excluded), first-seen order."""
    seen: dict[str, None] = {}
    for record in records:
        for key, value in record.items():
            if key not in AXES and isinstance(value, (int, float)) and not isinstance(value, bool):
                seen.setdefault(key, None)
    return list(seen)


def series(records: list[dict[str, Any]], key: str, axis: str = "step") -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of ``key`` over ``axis`` in the records that hold it (non-finite values kept as NaN)."""
    points = [(r.get(axis), r[key]) for r in records
              if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
              and isinstance(r.get(axis), (int, float))]
    if not points:
        return np.zeros(0), np.zeros(0)
    x, y = zip(*points, strict=True)
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def read_config(run: Path) -> dict[str, Any] | None:
    import yaml

    from contrastive.recipe import yaml_values

    try:
        value = yaml_values.load(RunDir(run).config.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return value if isinstance(value, dict) else None


def sample(n: int, cap: int, seed: int) -> list[int]:
    """All of ``range(n)``, or ``cap`` of them drawn with ``seed`` (sorted)."""
    if n <= cap:
        return list(range(n))
    return sorted(torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:cap].tolist())


def pca_2d(x: np.ndarray) -> np.ndarray:
    """``(n, 2)``: the rows of ``x`` ``(n, D)`` on their first two principal axes (an SVD of the
    centred rows; each axis's sign fixed so its largest loading is positive, for a stable map)."""
    centred = torch.from_numpy(x) - torch.from_numpy(x).mean(dim=0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    axes = vh[:2]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)))
    return (centred @ (axes * signs).T).numpy()


def project_2d(features: torch.Tensor, seed: int, method: str = "auto") -> tuple[np.ndarray, str]:
    """``(n, 2)`` coordinates of L2-normalised ``features`` ``(n, D)`` (euclidean distance on the
    sphere ranks neighbours as the cosine does) and the method's name: t-SNE (scikit-learn,
    seeded, PCA initialisation) for ``auto`` up to `TSNE_MAX_POINTS` points, else PCA.
    Without scikit-learn (an optional package) the map is PCA's, and its name says why."""
    x = F.normalize(features.double(), dim=1).numpy()
    n = x.shape[0]
    use_tsne = method == "tsne" or (method == "auto" and n <= TSNE_MAX_POINTS)
    if n < 3 or x.shape[1] < 2:  # nothing to project: the points in a row
        return np.stack([np.arange(n, dtype=float), np.zeros(n)], axis=1), "PCA"
    if n < 5:  # too few points for t-SNE's perplexity
        use_tsne = False
    if not use_tsne:
        return pca_2d(x), "PCA"
    try:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits
    except ImportError:
        return pca_2d(x), "PCA (t-SNE needs scikit-learn: pip install scikit-learn)"

    if x.shape[1] > 50:  # the usual reduction before t-SNE: faster, and noise dimensions dropped
        x = PCA(n_components=min(50, n), random_state=seed).fit_transform(x)
    tsne = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed)
    # One OpenMP thread: beside torch's own OpenMP pool, scikit-learn's threads in the Barnes-Hut
    # gradient spin against it (measured: 450 digits 72 s on 2 busy cores, 5.5 s on one thread),
    # and one thread makes the map the same on every machine.
    with threadpool_limits(limits=1, user_api="openmp"):
        return tsne.fit_transform(x), "t-SNE"


def display_images(dataset, indices: list[int], transform) -> list[np.ndarray]:
    """The images ``indices`` of ``dataset`` as the backbone sees them before normalisation
    ([`EvalTransform`][contrastive.evaluation.features.EvalTransform] with ``backbone_input=False``):
    ``(H, W, C)`` float in [0, 1]."""
    if not indices:
        return []
    images = torch.stack([dataset[i][0] for i in indices])
    return [to_hwc(x) for x in transform(images, backbone_input=False)]


def to_hwc(image: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` float -> ``(H, W, C)`` in [0, 1]; values outside it (a plugin's normalising
    step) are rescaled to its range."""
    x = image.detach().float().cpu()
    if x.min() < -1e-3 or x.max() > 1 + 1e-3:
        x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-8)
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def pick_queries(labels: torch.Tensor, count: int, seed: int) -> list[int]:
    """``count`` positions of ``labels`` ``(n,)`` in a seeded order, of different classes while
    there are classes left (labels -1: any)."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    picked, classes = [], set()
    for position in order:
        label = int(labels[position])
        if label < 0 or label not in classes:
            picked.append(position)
            classes.add(label)
        if len(picked) == count:
            return picked
    return picked + [p for p in order if p not in picked][: count - len(picked)]


def nearest(queries: torch.Tensor, gallery: torch.Tensor, k: int, exclude: list[int] | None = None):
    """``(cosines, indices)`` ``(q, k)`` of the ``k`` gallery rows most similar to each query by
    cosine; ``exclude[i]``: a gallery row query ``i`` may not retrieve (itself), or -1."""
    sims = F.normalize(queries.float(), dim=1) @ F.normalize(gallery.float(), dim=1).T
    if exclude is not None:
        for row, column in enumerate(exclude):
            if column >= 0:
                sims[row, column] = -math.inf
    return sims.topk(min(k, gallery.shape[0]), dim=1)


def gather_features(data, backbone, recipe, device, report: ReportData, *, map_method: str = "auto",
                    map_points: int = MAP_POINTS) -> None:
    """Fill the 2-D map and the neighbour grid of ``report`` from the frozen features of ``backbone``
    on ``data`` (an [`EvalData`][contrastive.evaluation.data.EvalData])."""
    from contrastive.evaluation.features import extract_features

    seed, batch = recipe.seed, recipe.eval.batch_size
    labelled = data.unlabelled is None
    report.classes = list(data.test.classes) if labelled and getattr(data.test, "classes", None) else None
    test_idx = sample(len(data.test), max(map_points, QUERIES), seed)
    test_x, test_y = extract_features(backbone, data.test, data.transform, batch_size=batch, device=device, indices=test_idx)
    test_y = test_y if labelled else torch.full_like(test_y, -1)
    report.map_coords, report.map_method = project_2d(test_x, seed, map_method)
    report.map_labels, report.map_total = test_y.numpy(), len(data.test)
    if not labelled:
        report.notes["map"] = f"no labels ({data.unlabelled}): every point is drawn in one colour"

    gallery_idx = sample(len(data.train), GALLERY_MAX, seed + 1)
    gallery_x, gallery_y = extract_features(backbone, data.train, data.transform, batch_size=batch, device=device,
                                            indices=gallery_idx)
    picks = pick_queries(test_y, QUERIES, seed + 2)
    query_idx = [test_idx[p] for p in picks]
    same = data.holdout is None and data.train_component == data.test_component  # evaluation off, no test split
    position = {g: i for i, g in enumerate(gallery_idx)}
    exclude = [position.get(q, -1) for q in query_idx] if same else None  # the query itself is no neighbour
    cosines, ranks = nearest(test_x[picks], gallery_x, NEIGHBOURS, exclude)
    shown = [[gallery_idx[j] for j in row] for row in ranks.tolist()]
    images = display_images(data.train, sorted({i for row in shown for i in row}), data.transform)
    by_index = dict(zip(sorted({i for row in shown for i in row}), images, strict=True))
    gallery_labels = gallery_y if labelled else torch.full_like(gallery_y, -1)
    report.neighbours = Neighbours(
        queries=display_images(data.test, query_idx, data.transform),
        query_labels=[int(test_y[p]) for p in picks],
        images=[[by_index[i] for i in row] for row in shown],
        labels=[[int(gallery_labels[j]) for j in row] for row in ranks.tolist()],
        cosines=cosines.tolist(), gallery_size=len(gallery_idx), labelled=labelled,
    )
    if not labelled:
        report.notes["neighbours"] = f"no labels ({data.unlabelled}): retrieved images cannot be marked right or wrong"


def gather_views(recipe, registries: Registries, dataset, report: ReportData) -> None:
    """One training image (drawn with the recipe's seed) and `VIEWS_PER_GROUP` views of it per
    view group, drawn by the run's pipelines (as `build_parts`
    builds them; a normalisation step (`is_normalization`) is left out so the views show as images)."""
    from contrastive.components.augmentations.views import ViewPipeline, match_channels
    from contrastive.plan import is_normalization

    factory = registries.methods.get(recipe.method.name)
    groups = recipe.view_groups(int(getattr(factory, "views", 2)))
    index = sample(len(dataset), 1, recipe.seed + 3)[0]
    aspect = None
    if dataset_info(dataset).whole_image:
        image, _, aspect = dataset.load_item(index)
    else:
        image = dataset[index][0]
    x = match_channels(image[None], recipe.backbone_in_chans)
    normalized = False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        for number, group in enumerate(groups):
            built = [registries.augmentations.build(a.name, **a.args) for a in group.augmentation]
            steps = [step for step in built if not is_normalization(step)]
            normalized = normalized or len(steps) < len(built)
            kwargs = {"source_aspect": torch.tensor([float(aspect)] * VIEWS_PER_GROUP)} if aspect is not None else {}
            views = ViewPipeline(steps)(torch.cat([x] * VIEWS_PER_GROUP), **kwargs)
            names = ", ".join(a.name for a in group.augmentation)
            title = f"views.{number}: {group.count} view{'s' if group.count > 1 else ''} per image ({names})"
            report.views.append(ViewGroupPreview(title, to_hwc(ViewPipeline.to_float(x)[0]), [to_hwc(v) for v in views],
                                                 aspect))
    if normalized:
        report.notes["views"] = "the normalize step is left out here so that the views show as images"


def gather(run_dir: str | Path, registries: Registries, *, recipe=None, backbone=None, data=None, training_data=None, plan=None,
           device: torch.device | str | None = None, map_method: str = "auto", map_points: int = MAP_POINTS) -> ReportData:
    """Read a run directory and compute what its report shows.  Inside ``fit`` the caller passes
    what it already holds (``recipe``, the trained ``backbone``, the eval ``data``, the
    ``training_data``, the run's ``plan``); otherwise they are loaded with
    `open_run` (the plan: the ``plan:`` section of ``config.yaml``)."""
    from contrastive.evaluation.data import EvalData
    from contrastive.evaluation.runs import default_device, open_run

    run = Path(run_dir)
    if not run.is_dir():
        raise EvaluationError(f"run directory '{run}' does not exist; pass the trainer.output_dir of a run")
    report = ReportData(run)
    report.training, report.evaluation_records = read_metrics(run)
    report.results, report.config = read_json_object(RunDir(run).results), read_config(run)
    if report.config is None and not report.training and report.results is None:
        raise EvaluationError(f"'{run}' holds no config.yaml, metrics.jsonl or results.json: not a run's trainer.output_dir")
    if recipe is None or backbone is None:
        try:
            recipe, backbone, plan = open_run(run, registries)
        except ContrastiveError as exc:
            why = f"no backbone to show: {exc}"
            for section in ("map", "neighbours"):
                report.notes[section] = why
            if recipe is None:
                report.notes["views"] = why
    if recipe is not None and backbone is not None:
        device = torch.device(device) if device is not None else default_device()
        try:
            data = data or EvalData.from_recipe(recipe, registries, plan)
            gather_features(data, backbone.to(device), recipe, device, report, map_method=map_method,
                            map_points=map_points)
        except ContrastiveError as exc:
            report.notes["map"] = report.notes["neighbours"] = f"the evaluation data cannot be read: {exc}"
    if recipe is not None:
        try:
            dataset = training_data if training_data is not None else registries.datasets.build(recipe.data.name,
                                                                                                **recipe.data.args)
            gather_views(recipe, registries, dataset, report)
        except ContrastiveError as exc:
            report.notes["views"] = f"the training data cannot be read: {exc}"
    return report
