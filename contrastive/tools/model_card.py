"""The model card (``README.md``) of a ``contrastive export`` folder: the Hub's metadata (library
timm, tags, licence) and what the backbone is — the recipe it was trained with, the evaluation the
run recorded and how to load it.

Written from a plain template (YAML front matter + Markdown) rather than with huggingface_hub's
``ModelCard.from_template`` (it needs jinja2, and a plain export must not need huggingface_hub)
or timm's ``generate_readme`` (it always states a licence, apache-2.0 unless told, and lists a
"Dataset" detail as Hub dataset ids, which our dataset names are not).  Local paths in the
recipe (``root``, ``path``, ...) are left out: the card is meant to be published.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from contrastive.recipe import Component, Recipe

#: Component arguments that name local files or folders: not published.
PATH_ARGS = frozenset({"root", "path", "data_dir", "data_files", "cache_dir", "checkpoint_path"})
#: The paper of each built-in method, for the card's recipe table.
PAPERS = {
    "simclr": ("Chen et al., 2020", "https://arxiv.org/abs/2002.05709"),
    "supcon": ("Khosla et al., 2020", "https://arxiv.org/abs/2004.11362"),
    "moco": ("He et al., 2020", "https://arxiv.org/abs/1911.05722"),
    "moco_v3": ("Chen, Xie and He, 2021", "https://arxiv.org/abs/2104.02057"),
    "nnclr": ("Dwibedi et al., 2021", "https://arxiv.org/abs/2104.14548"),
}
#: The evaluation's scores, as the card's table columns (the keys of results.json's ``eval``).
SCORES = (
    ("knn_top1", "kNN top-1"), ("knn_top5", "kNN top-5"), ("linear_top1", "linear top-1"),
    ("linear_top5", "linear top-5"), ("alignment", "alignment"), ("uniformity", "uniformity"),
    ("effective_rank", "effective rank"),
)
ROW_LABELS = {"random_init": "random init (same architecture)", "raw_pixels": "raw pixels"}
PACKAGE_URL = "https://pypi.org/project/contrastive-ssl/"


def _component(component: Component | None) -> str:
    """```name``` and its arguments (local paths left out), for a table cell."""
    if component is None:
        return "none"
    args = {k: v for k, v in component.args.items() if k not in PATH_ARGS}
    shown = ", ".join(f"{k}: {json.dumps(v, default=str)}" for k, v in args.items())
    return f"`{component.name}`" + (f" ({shown})" if shown else "")


def _views(recipe: Recipe, views_per_image: int | None) -> str:
    groups = recipe.view_groups(views_per_image or 2)
    return "; ".join(f"{g.count} × " + ", ".join(a.name for a in g.augmentation) for g in groups)


def _batch(recipe: Recipe, results: dict[str, Any]) -> str:
    trainer = recipe.trainer
    processes = int(results.get("processes") or 1)
    total = results.get("global_batch_size") or trainer.batch_size * trainer.accumulate * processes
    return (f"{total} images per step ({trainer.batch_size} per process × {processes} process(es)"
            f" × {trainer.accumulate} accumulated)")


def recipe_table(recipe: Recipe, results: dict[str, Any], input_config: dict[str, Any]) -> list[str]:
    """The recipe's settings that define the model, as Markdown table rows."""
    method = recipe.method.name
    paper = f" ([{PAPERS[method][0]}]({PAPERS[method][1]}))" if method in PAPERS else ""
    c, h, w = input_config["input_size"]
    planned = recipe.trainer.max_epochs
    trained = results.get("epochs", planned)
    epochs = f"{trained}" if trained == planned else f"{trained} of {planned} (trainer.max_steps {recipe.trainer.max_steps})"
    steps = f", {results['steps']} step{'s' if results['steps'] != 1 else ''}" if results.get("steps") else ""
    rows = [
        ("method", f"`{method}`{paper}"),
        ("backbone", _component(recipe.backbone)),
        ("training data", _component(recipe.data)),
        ("views per image", _views(recipe, results.get("views_per_image"))),
        ("input", f"{c}×{h}×{w}, mean {list(input_config['mean'])}, std {list(input_config['std'])}"),
        *[(kind, _component(getattr(recipe, kind))) for kind in ("head", "predictor", "loss") if getattr(recipe, kind)],
        ("optimizer", _component(recipe.optimizer)),
        ("schedule", _component(recipe.scheduler)),
        ("epochs", f"{epochs}{steps}"),
        ("batch", _batch(recipe, results)),
        ("precision", str(results.get("mixed_precision") or recipe.trainer.mixed_precision or "no")),
        ("seed", str(recipe.seed)),
    ]
    return ["| setting | value |", "| --- | --- |", *[f"| {k} | {v.replace('|', '/')} |" for k, v in rows]]


def evaluation_section(scores: dict[str, Any] | None) -> list[str]:
    """results.json's ``eval``: the backbone against its baselines, one row each (Markdown)."""
    if not scores:
        return ["The run recorded no evaluation (its recipe's `eval.protocols` was empty)."]
    columns = [(key, title) for key, title in SCORES if key in scores]
    rows = [("this backbone", scores)] + [(ROW_LABELS.get(k, k), v) for k, v in scores.get("baselines", {}).items()]
    test = scores.get("test_data") or {}
    kind = "held-out" if scores.get("holdout") else "test"
    counts = (f"{scores['num_train']} train / {scores['num_test']} {kind} images" if "num_train" in scores
              else f"{scores.get('num_test', '?')} {kind} images")
    protocols = []
    if any(key.startswith("knn") for key, _ in columns):
        knn = scores.get("knn", {})
        protocols.append(f"kNN: cosine similarity, k {knn.get('k', '?')}, temperature {knn.get('temperature', '?')}")
    if any(key.startswith("linear") for key, _ in columns):
        protocols.append("linear: a linear classifier fit on the frozen train features")
    data = _component(Component(test.get("name", "?"), dict(test.get("args") or {})))
    lines = [f"Frozen features of {data}: {counts}" + "".join(f"; {p}" for p in protocols) + ".", ""]
    if not columns:
        return lines[:1] + [f"(no scores: {scores.get('skipped', {}).get('reason', 'none recorded')})"]
    lines += ["| features | " + " | ".join(title for _, title in columns) + " |",
              "| --- |" + " ---: |" * len(columns)]
    for label, row in rows:
        cells = [f"{row[key]:.4f}" if isinstance(row.get(key), (int, float)) else "–" for key, _ in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if scores.get("skipped"):
        lines += ["", f"kNN and linear probe skipped: {scores['skipped']['reason']}"]
    return lines


def usage_section(repo_id: str | None, out: str, timm_loads: bool, num_features: int) -> list[str]:
    """How to load the folder: timm (``hf-hub:`` once pushed, else ``local-dir:``) or ``load_backbone``."""
    lines: list[str] = []
    if timm_loads:
        where = f"hf-hub:{repo_id}" if repo_id else f"local-dir:{out}"
        lines += [
            f"timm builds the backbone with its weights and preprocessing (a {num_features}-feature output, no classifier):",
            "", "```python", "import timm", "import torch", "",
            f'model = timm.create_model("{where}", pretrained=True).eval()',
            "config = timm.data.resolve_data_config({}, model=model)",
            "transform = timm.data.create_transform(**config)   # resize to the training size, normalise",
            "with torch.no_grad():",
            f"    features = model(transform(image).unsqueeze(0))   # a PIL image -> (1, {num_features})",
            "```", ""]
        lines += ["It also loads with `contrastive.load_backbone` (`pip install contrastive-ssl`), as below."]
    else:
        lines += ["The backbone has the CIFAR stem (`cifar_stem: true`: a stride-1 first convolution, no max-pool), "
                  "which timm's config cannot express: load it with `contrastive.load_backbone` "
                  "(`pip install contrastive-ssl`)."]
    source = (["from huggingface_hub import snapshot_download", "", f'model = contrastive.load_backbone(snapshot_download("{repo_id}"))']
              if repo_id else [f'model = contrastive.load_backbone("{out}")'])
    lines += ["", "```python", "import contrastive", *source,
              f"# (N, C, H, W) float images, normalised with the mean/std above -> (N, {num_features}) features", "```"]
    return lines


def model_card(recipe: Recipe, results: dict[str, Any] | None, *, input_config: dict[str, Any], num_features: int,
               timm_loads: bool, out: str, repo_id: str | None = None, license: str | None = None,
               version: str = "") -> str:
    """The card's text.  ``results``: the run's results.json (None: none was written);
    ``input_config``: the exported ``input_size`` / ``mean`` / ``std``; ``repo_id``: where the
    folder is pushed (None: a local export, loaded from ``out``); ``license``: a Hub licence id
    for the metadata (None: not stated)."""
    results = results or {}
    method = recipe.method.name
    metadata: dict[str, Any] = {
        "library_name": "timm",
        "pipeline_tag": "image-feature-extraction",
        "tags": ["timm", "image-feature-extraction", "self-supervised-learning", "contrastive-learning",
                 "contrastive-ssl", method],
    }
    if license:
        metadata["license"] = license
    title = repo_id.split("/")[-1] if repo_id else f"{method} {recipe.backbone.name} on {recipe.data.name}"
    lines = [
        "---", yaml.safe_dump(metadata, sort_keys=False).rstrip(), "---", "",
        f"# {title}", "",
        f"A `{recipe.backbone.name}` image backbone trained self-supervised with `{method}` on `{recipe.data.name}` "
        f"by [contrastive-ssl]({PACKAGE_URL}){' ' + version if version else ''}. It has no classifier: it maps an "
        f"image to {num_features} features, for kNN, linear probes, retrieval or fine-tuning.", "",
        "## Training recipe", "", *recipe_table(recipe, results, input_config), "",
        "## Evaluation", "", *evaluation_section(results.get("eval")), "",
        "## How to use", "", *usage_section(repo_id, out, timm_loads, num_features), "",
    ]
    return "\n".join(lines)
