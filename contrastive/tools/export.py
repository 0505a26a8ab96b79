"""``contrastive export RUN_DIR OUT/``: a run's backbone as a folder timm loads directly.

The folder is timm's own Hugging Face layout, written by ``timm.models.save_for_hf``:
``model.safetensors`` and ``config.json`` (``architecture``, ``num_features``, ``num_classes``
0, ``model_args``, and a ``pretrained_cfg`` with the run's input size, mean/std and
interpolation), so ``timm.create_model("local-dir:OUT", pretrained=True)`` rebuilds it, and the
folder is what ``huggingface_hub`` uploads for ``timm.create_model("hf-hub:USER/NAME")``.
``contrastive.json`` beside them records the backbone as this package builds it (name and
arguments) for [`load_backbone`][contrastive.tools.export.load_backbone], the loader for what timm's config cannot express: the
CIFAR stem (``cifar_stem: true``) replaces timm's stem, so such an export says so in one line
and loads with [`load_backbone`][contrastive.tools.export.load_backbone] only.  ``README.md`` is its model card
([`contrastive.tools.model_card`][contrastive.tools.model_card]: the recipe, the run's evaluation, how to load it);
[`contrastive.tools.hub`][contrastive.tools.hub] uploads the folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from contrastive._version import __version__
from contrastive.errors import EvaluationError
from contrastive.storage.run_dir import RunDir

if TYPE_CHECKING:
    from contrastive.registry import Registries

#: Backbone arguments of ours that are not timm.create_model's.
OWN_ARGS = ("cifar_stem", "checkpoint_path")
CONTRASTIVE_JSON = "contrastive.json"
MODEL_CARD = "README.md"
#: What an export writes; a folder holding only these, from an export of the same run, is replaced.
EXPORT_FILES = frozenset({"model.safetensors", "config.json", CONTRASTIVE_JSON, MODEL_CARD})


def _data_config(recipe, plan) -> dict[str, Any]:
    """timm's data config from the run's plan (`RunPlan`): its view size
    and its normalisation step's mean/std (none: 0 and 1)."""
    height, width = plan.view_size
    channels = recipe.backbone_in_chans
    norm = plan.normalization
    mean = tuple(norm.mean) if norm is not None and norm.mean is not None else (0.0,) * channels
    std = tuple(norm.std) if norm is not None and norm.std is not None else (1.0,) * channels
    # the run's views are whole images resized (no centre crop): crop_pct 1
    return {"input_size": (channels, height, width), "mean": mean, "std": std, "crop_pct": 1.0,
            "interpolation": "bilinear"}


def _run_key(run: Path) -> str:
    """A run's identity in contrastive.json: a hash of its absolute path (the path itself is not published)."""
    return hashlib.sha256(str(run.resolve()).encode()).hexdigest()[:16]


def _earlier_export_of(out: Path, run: Path) -> bool:
    """Whether ``out`` holds nothing but an earlier export of the run ``run``."""
    if not {p.name for p in out.iterdir()} <= EXPORT_FILES:
        return False
    try:
        return json.loads((out / CONTRASTIVE_JSON).read_text()).get("run") == _run_key(run)
    except (OSError, ValueError, AttributeError):
        return False


def _results(run: Path) -> dict[str, Any] | None:
    try:
        results = json.loads(RunDir(run).results.read_text())
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) else None


def export(run_dir: str | Path, out: str | Path, registries: Registries, *, repo_id: str | None = None,
           license: str | None = None) -> dict[str, Any]:
    """Write ``out/`` from ``run_dir``; returns what was written and whether timm alone loads it.

    ``out`` must be new, empty, or hold only an earlier export of this run (then it is replaced).
    ``repo_id``: the Hub repo the folder is for (the model card's loading code names it);
    ``license``: the Hub licence id the card's metadata states (None: none)."""
    from timm.models import save_for_hf

    from contrastive.evaluation.runs import open_run
    from contrastive.tools.model_card import model_card

    recipe, backbone, plan = open_run(run_dir, registries)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not _earlier_export_of(out, Path(run_dir)):
        raise EvaluationError(f"export folder '{out}' is not empty; pick a new OUT or empty it first "
                              "(a folder holding only an earlier export of this run is replaced)")
    out.mkdir(parents=True, exist_ok=True)
    args = dict(recipe.backbone.args)
    timm_args = {k: v for k, v in args.items() if k not in OWN_ARGS}
    data_config = _data_config(recipe, plan)
    tag = {"pretrained_cfg": {"tag": f"{recipe.method.name}_{recipe.data.name}"}}  # not the source model's tag
    save_for_hf(backbone, str(out), model_config=tag, model_args=timm_args, safe_serialization=True, data_config=data_config)
    timm_loads = not args.get("cifar_stem", False)
    (out / CONTRASTIVE_JSON).write_text(json.dumps({
        "backbone": {"name": recipe.backbone.name, "args": {k: v for k, v in args.items() if k != "checkpoint_path"}},
        "method": recipe.method.name, "data": {"name": recipe.data.name}, "timm_loads": timm_loads,
        "input": data_config, "run": _run_key(Path(run_dir)),
    }, indent=2, default=list))
    num_features = int(getattr(backbone, "num_features", 0))
    card = model_card(recipe, _results(Path(run_dir)), input_config=data_config, num_features=num_features,
                      timm_loads=timm_loads, out=str(out), repo_id=repo_id, license=license, version=__version__)
    (out / MODEL_CARD).write_text(card, encoding="utf-8")
    return {"out": str(out), "timm_loads": timm_loads, "backbone": recipe.backbone.name,
            "num_features": num_features, "files": sorted(p.name for p in out.iterdir())}


def load_backbone(path: str | Path, registries: Registries | None=None) -> nn.Module:
    """The backbone of a ``contrastive export`` folder, built as the run built it (the CIFAR
    stem included) with its ``model.safetensors`` (safetensors only: nothing unpickled), in eval mode."""
    from safetensors.torch import load_file

    import contrastive

    path = Path(path)
    try:
        saved = json.loads((path / CONTRASTIVE_JSON).read_text())
        name, args = saved["backbone"]["name"], dict(saved["backbone"]["args"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvaluationError(f"'{path}' is not a contrastive export (no readable {CONTRASTIVE_JSON}): {exc}") from exc
    registries = registries or contrastive.load_registries()
    model = registries.backbones.build(name, **args)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.eval()
