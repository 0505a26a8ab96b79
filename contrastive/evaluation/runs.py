"""Runs on disk: [`load_run`][contrastive.evaluation.runs.load_run] / `open_run` (a run directory's recipe, backbone weights —
of a finished run, or of the newest checkpoint of one still training — and recorded
`RunPlan`, for ``contrastive eval``, ``export`` and ``report``) and
[`embed`][contrastive.evaluation.runs.embed] (``contrastive embed``: frozen features written to ``.npz``)."""

from __future__ import annotations

import copy
import hashlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from contrastive.components.datasets.contract import dataset_info
from contrastive.distributed import barrier, evaluation_group, rank, world_size
from contrastive.errors import ContrastiveError, EvaluationError, RecipeError
from contrastive.evaluation.data import (
    _split_component,
    build_dataset,
    eval_crop,
    eval_data_components,
    holdout_applies,
    holdout_split,
)
from contrastive.evaluation.embedding_shards import DEFAULT_SHARD_ROWS, write_shards
from contrastive.evaluation.features import EvalTransform, extract_features
from contrastive.evaluation.holdout import subset
from contrastive.plan import RunPlan, recorded_plan
from contrastive.recipe import Component, Recipe
from contrastive.storage.run_dir import RunDir

if TYPE_CHECKING:
    from contrastive.registry import Registries

#: What ``contrastive embed --split`` takes.
EMBED_SPLITS = ("train", "test", "all")
#: What ``contrastive embed --format`` takes: one file, or a folder of shards.
EMBED_FORMATS = ("npz", "shards")


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of a module's state (names, shapes, dtypes, values): which weights an export came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _has_paths(dataset) -> bool:
    return dataset_info(dataset).paths is not None


def load_run(run_dir: str | Path, registries: Registries, overrides: list[str] | None = None) -> tuple[Recipe, nn.Module]:
    """The recipe of a finished run (``config.yaml``, with ``--key value`` overrides) and its
    backbone with the weights of ``backbone.safetensors`` (read with safetensors, no pickle).
    `open_run` also gives the run's plan, for ``evaluate(..., plan=plan)``."""
    recipe, backbone, _plan = open_run(run_dir, registries, overrides)
    return recipe, backbone


def open_run(run_dir: str | Path, registries: Registries, overrides: list[str] | None = None) -> tuple[Recipe, nn.Module, RunPlan]:
    """[`load_run`][contrastive.evaluation.runs.load_run], and the run's `RunPlan`: the ``plan:`` section of
    its ``config.yaml``, or (a run written before plans were recorded) the plan computed from its recipe."""
    import yaml

    from contrastive import recipe as recipes
    from contrastive.recipe import yaml_values

    run = Path(run_dir)
    hint = "pass the trainer.output_dir of a finished run (it holds config.yaml and backbone.safetensors)"
    if not run.is_dir():
        raise EvaluationError(f"run directory '{run}' does not exist; {hint}")
    config_path = RunDir(run).config
    if not config_path.is_file():
        raise EvaluationError(f"'{run}' has no config.yaml; {hint}")
    try:
        raw = yaml_values.load(config_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise EvaluationError(f"{config_path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise EvaluationError(f"{config_path} is not a recipe mapping")
    config = raw
    raw = {k: v for k, v in raw.items() if k not in ("plugins", "versions", "launch", "plan")}
    raw = recipes.apply_overrides(raw, recipes.parse_overrides(list(overrides or [])))
    try:
        recipe = recipes.validate(raw, registries)
    except RecipeError as exc:
        raise RecipeError(f"{config_path}: {exc}") from exc
    try:
        plan = recorded_plan(config, recipe, registries)
    except ContrastiveError as exc:
        raise type(exc)(f"{config_path}: {exc}") from exc
    weights, state = run_weights(run, hint)
    backbone = registries.backbones.build(recipe.backbone.name, **recipe.backbone.args)
    try:
        backbone.load_state_dict(state)
    except RuntimeError as first:
        # a fixed-input-size model (ViT ...) that fit rebuilt with img_size = the view size
        try:
            backbone = registries.backbones.build(recipe.backbone.name, **recipe.backbone.args, img_size=plan.view_size)
            backbone.load_state_dict(state)
        except Exception:
            raise EvaluationError(
                f"{weights} does not fit backbone '{recipe.backbone.name}' built from {config_path}: {first}"
            ) from first
    backbone.eval()
    return recipe, backbone, plan


def run_weights(run: Path, hint: str = "") -> tuple[Path, dict[str, torch.Tensor]]:
    """The backbone weights of a run: ``backbone.safetensors`` of a finished run; while the run
    is still training (its lock is held: `contrastive.storage.run_lock`) or when it stopped before
    the end, the backbone of its newest checkpoint that verifies.  A checkpoint removed while it
    is read (``keep_last`` pruning) makes it try the next newest."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from contrastive.storage import checkpoint
    from contrastive.storage.run_lock import holder

    final = RunDir(run).backbone
    training = holder(run)
    if final.is_file() and not training:
        return run_weights_final(final)
    for _ in range(3):
        path, _problems = checkpoint.newest_valid(RunDir(run).checkpoints)
        if path is None:
            break
        try:
            tensors = load_file(str(path / "model.safetensors"))
        except (SafetensorError, OSError):
            continue  # pruned under us: look again
        state = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
        now = f"still training (pid {training.get('pid', '?')} on {training.get('host', '?')})" if training else "unfinished"
        print(f"note: {run} is {now}: using the backbone of its newest complete checkpoint, {path.name}", file=sys.stderr)
        return path / "model.safetensors", state
    if final.is_file():
        return run_weights_final(final)
    extra = " and no complete checkpoint yet" if training else " (resume it with contrastive fit --trainer.resume auto)" if RunDir(run).checkpoints.is_dir() else ""
    raise EvaluationError(f"'{run}' has no backbone.safetensors{extra}; {hint}")


def run_weights_final(final: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """``backbone.safetensors`` read (safetensors only: nothing unpickled)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return final, load_file(str(final))
    except (SafetensorError, OSError) as exc:
        raise EvaluationError(f"cannot read {final}: {exc}; it is damaged — re-run or restore it") from exc


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def embed_component(recipe: Recipe, registries: Registries, split: str, data_overrides: dict[str, Any] | None = None) -> Component:
    """The data ``contrastive embed`` reads: the recipe's ``split`` data (``train``, ``test`` or
    ``all``: the whole training dataset), changed by ``--data.*``.  For data whose test split is
    held out (`holdout_applies`) this is the whole training
    dataset; [`embed`][contrastive.evaluation.runs.embed] then takes the held-out (``test``) or kept (``train``) part of it."""
    overrides = dict(data_overrides or {})
    name = overrides.get("name")
    if name is not None and name != recipe.data.name:  # crop: center unless --data.args.crop says otherwise
        return eval_crop(Component(name, dict(overrides.get("args") or {})), registries, force=False)
    if split == "all" or (split == "train" and recipe.eval.train_data is None
                          and _split_component(recipe.data, registries, True) is None):
        base = eval_crop(copy.deepcopy(recipe.data), registries, force=True)  # the training data
    else:
        train_c, test_c = eval_data_components(recipe, registries)
        base = train_c if split == "train" else test_c
    base.args.update(overrides.get("args") or {})
    return base


def _embed_part(recipe: Recipe, registries: Registries, split: str, dataset, component: Component, other_data: bool):
    """``dataset`` itself, or its held-out (``test``) / kept (``train``) part when the run's evaluation
    holds part of its training data out; a ``test`` split the recipe does not have is an error."""
    if other_data or split == "all":
        return dataset
    if holdout_applies(recipe, registries):
        if split == "train" and recipe.eval.train_data is not None:
            return dataset
        kept, held = holdout_split(recipe, dataset, component)
        return subset(dataset, held if split == "test" else kept)
    if split == "test" and recipe.eval.test_data is None and _split_component(recipe.data, registries, False) is None:
        raise EvaluationError(
            f"the run's data ({recipe.data.name}) has no test split and its evaluation was off, so nothing was held out; "
            f"use --split all (every training image) or point --data.name/--data.args at other data"
        )
    return dataset


def embed(
    run_dir: str | Path, out: str | Path, registries: Registries, *, split: str = "test", data_overrides: list[str] | None = None,
    batch_size: int | None = None, device: torch.device | str | None = None, format: str = "npz",
    shard_rows: int = DEFAULT_SHARD_ROWS,
) -> dict[str, Any]:
    """Write the frozen features of a run's backbone on some data to ``out``.

    ``format="npz"``: one ``.npz`` file of ``embeddings`` (N × num_features float32), ``labels`` (N,)
    int64 (−1: none), ``paths`` (N,) for file-based data (row i: the image of embedding i;
    ``hf_dataset``: ``PATH[SPLIT][ROW]``), ``classes`` when the data has them; the features are held
    in memory.  ``format="shards"``: a folder of shards of ``shard_rows`` rows, streamed, resumable
    ([`contrastive.evaluation.embedding_shards`][contrastive.evaluation.embedding_shards]): for data of any size.
    ``split``: ``train`` / ``test`` (the run's evaluation data; for a folder the kept / held-out
    images) or ``all`` (every training image).  Files that cannot be decoded are left out
    (``left_out`` of the returned summary counts them).

    When torch.distributed is initialised (a launcher started several processes), every process
    must call this: each extracts its part ([`extract_features`][contrastive.evaluation.features.extract_features]);
    for ``npz`` the main process alone writes ``out``, for ``shards`` each process writes its own
    shards; every process returns the summary."""
    from contrastive import recipe as recipes

    if split not in EMBED_SPLITS:
        raise EvaluationError(f"--split must be {', '.join(EMBED_SPLITS)}, got {split!r}")
    if format not in EMBED_FORMATS:
        raise EvaluationError(f"--format must be {' or '.join(EMBED_FORMATS)}, got {format!r}")
    pairs = recipes.parse_overrides(list(data_overrides or []))
    for key, _ in pairs:
        if key.split(".")[0] != "data":
            raise EvaluationError(f"embed takes --data.* overrides only, got --{key}")
    data_dict = recipes.apply_overrides({"data": {}}, pairs)["data"]
    recipe, backbone, plan = open_run(run_dir, registries)
    component = embed_component(recipe, registries, split, data_dict)
    try:
        registries.datasets.check_args(component.name, component.args)
    except ContrastiveError as exc:
        raise RecipeError(f"data: {exc}") from exc
    dataset = build_dataset(component, registries, "data")
    other = data_dict.get("name") is not None and data_dict["name"] != recipe.data.name
    dataset = _embed_part(recipe, registries, split, dataset, component, other)
    device = torch.device(device) if device is not None else default_device()
    transform = EvalTransform.from_plan(recipe, registries, plan)
    group = evaluation_group(recipe.eval.collective_timeout)
    batch_size = batch_size or recipe.eval.batch_size
    data = {"name": component.name, "args": component.args}
    if format == "shards":
        spec = {"run": str(Path(run_dir).resolve()), "backbone_sha256": weights_digest(backbone), "data": data,
                "split": split}
        manifest = write_shards(backbone.to(device), dataset, transform, Path(out), spec, shard_rows=shard_rows,
                                batch_size=batch_size, device=device, group=group, rank=rank(), world=world_size())
        return {"out": str(out), "data": data, "shape": [manifest["rows"], manifest["num_features"]],
                "paths": _has_paths(dataset), "left_out": manifest["left_out"],
                "shards": len(manifest["shards"]), "resumed": manifest["resumed"]}
    feats, labels = extract_features(backbone.to(device), dataset, transform,
                                     batch_size=batch_size, device=device, group=group)
    out = Path(out)
    if out.suffix != ".npz":
        out = out.with_name(out.name + ".npz")
    # an undecodable file's row holds the next readable image (the datasets' skip rule): left out
    bad = set(dataset_info(dataset).unreadable_indices())
    keep = [i for i in range(len(feats)) if i not in bad]
    feats, labels = feats[keep], labels[keep]
    arrays: dict[str, np.ndarray] = {"embeddings": feats.numpy().astype(np.float32), "labels": labels.numpy().astype(np.int64)}
    if dataset_info(dataset).paths is not None:
        arrays["paths"] = np.asarray([str(dataset.paths[i]) for i in keep])
    if dataset_info(dataset).classes:
        arrays["classes"] = np.asarray(list(dataset.classes))
    try:
        if rank() == 0:
            out.parent.mkdir(parents=True, exist_ok=True)
            np.savez(out, **arrays)
    except OSError as exc:
        raise EvaluationError(f"cannot write {out}: {exc.strerror or exc}; pass another --out") from exc
    finally:
        barrier(group)  # the file is whole before any process returns
    return {"out": str(out), "data": data, "shape": list(feats.shape),
            "paths": "paths" in arrays, "left_out": len(bad)}
