"""``contrastive export RUN_DIR OUT/``: a run's backbone as a folder timm loads directly.

The folder is timm's own Hugging Face layout, written by ``timm.models.save_for_hf``:
``model.safetensors`` and ``config.json`` (``architecture``, ``num_features``, ``num_classes``
0, ``model_args``, and a ``pretrained_cfg`` with the run's input size, mean/std and
interpolation), so ``timm.create_model("local-dir:OUT", pretrained=True)`` rebuilds it, and the
folder is what ``huggingface_hub`` uploads for ``timm.create_model("hf-hub:USER/NAME")``.
``contrastive.json`` beside them records the backbone as this package builds it (name and
arguments) for :func:`load_backbone`, the loader for what timm's config cannot express: the
CIFAR stem (``cifar_stem: true``) replaces timm's stem, so such an export says so in one line
and loads with :func:`load_backbone` only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from contrastive.errors import EvaluationError

#: Backbone arguments of ours that are not timm.create_model's.
OWN_ARGS = ("cifar_stem", "checkpoint_path")
CONTRASTIVE_JSON = "contrastive.json"


def _data_config(recipe, registries) -> dict[str, Any]:
    from contrastive.evaluation.runs import _view_size_from_recipe

    height, width = _view_size_from_recipe(recipe, registries)
    norms = [a.args for a in recipe.global_augmentation if a.name == "normalize"]
    channels = recipe.backbone_in_chans
    mean = tuple(norms[-1].get("mean", (0.0,) * channels)) if norms else (0.0,) * channels
    std = tuple(norms[-1].get("std", (1.0,) * channels)) if norms else (1.0,) * channels
    # the run's views are whole images resized (no centre crop): crop_pct 1
    return {"input_size": (channels, height, width), "mean": mean, "std": std, "crop_pct": 1.0,
            "interpolation": "bilinear"}


def export(run_dir: str | Path, out: str | Path, registries) -> dict[str, Any]:
    """Write ``out/`` from ``run_dir``; returns what was written and whether timm alone loads it."""
    from timm.models import save_for_hf

    from contrastive.evaluation.runs import load_run

    recipe, backbone = load_run(run_dir, registries)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise EvaluationError(f"export folder '{out}' is not empty; pick a new OUT or empty it first")
    out.mkdir(parents=True, exist_ok=True)
    args = dict(recipe.backbone.args)
    timm_args = {k: v for k, v in args.items() if k not in OWN_ARGS}
    data_config = _data_config(recipe, registries)
    tag = {"pretrained_cfg": {"tag": f"{recipe.method.name}_{recipe.data.name}"}}  # not the source model's tag
    save_for_hf(backbone, str(out), model_config=tag, model_args=timm_args, safe_serialization=True, data_config=data_config)
    timm_loads = not args.get("cifar_stem", False)
    (out / CONTRASTIVE_JSON).write_text(json.dumps({
        "backbone": {"name": recipe.backbone.name, "args": {k: v for k, v in args.items() if k != "checkpoint_path"}},
        "method": recipe.method.name, "data": {"name": recipe.data.name}, "timm_loads": timm_loads,
        "input": data_config,
    }, indent=2, default=list))
    return {"out": str(out), "timm_loads": timm_loads, "backbone": recipe.backbone.name,
            "num_features": int(getattr(backbone, "num_features", 0))}


def load_backbone(path: str | Path, registries=None) -> nn.Module:
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
