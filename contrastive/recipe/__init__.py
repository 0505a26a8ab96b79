"""Recipes: YAML files that assemble a method from named registry parts.

Every component is ``{name: <registry name>, args: {...}}``.  ``method`` (default ``simclr``)
names the method, which gets the built ``backbone``, ``head``, ``loss`` and ``predictor`` its
signature names.  ``augmentation`` is a list of components: one view pipeline from which the
method's views (2 for SimCLR) are drawn independently; ``views`` replaces it with groups
``[{count, augmentation}, ...]`` (multi-crop: 2 global + 6 local views).  ``trainer`` holds
the loop settings below.  Command line overrides address any key with dots
(``--loss.args.temperature 0.2``, ``--augmentation.2.args.p 0.5``, ``--method.name supcon``,
``--trainer.max_epochs 1``); values are parsed as YAML.  ``callbacks`` lists components of the
``callbacks`` kind run beside the loop (``--callbacks '[{name: early_stopping, args: {monitor: loss}}]'``).

Validation (:func:`validate`) checks every name against the registries and every argument
against the component's signature — without building anything heavy.  This module imports no
torch.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from contrastive.errors import RecipeError, did_you_mean
from contrastive.recipe import yaml_values
from contrastive.recipe.signals import parse_signals
from contrastive.typecheck import matches, type_name

# Top-level component keys and the registry kind each one names.
COMPONENT_KINDS: dict[str, str] = {
    "data": "datasets",
    "backbone": "backbones",
    "head": "heads",
    "loss": "losses",
    "optimizer": "optimizers",
    "scheduler": "schedulers",
}
# Optional top-level components and the kind each names (head and loss: required by the methods
# whose signature names them without a default, e.g. simclr; checked with the registries).
OPTIONAL_COMPONENTS: dict[str, str] = {"method": "methods", "head": "heads", "loss": "losses", "predictor": "heads"}
DEFAULT_METHOD = "simclr"
# Built parts a method gets by parameter name, when its signature names them.
METHOD_PARTS = ("backbone", "head", "loss", "predictor")
# Arguments the engine supplies itself, per kind (not written in recipes).
INJECTED_ARGS: dict[str, tuple[str, ...]] = {
    "methods": METHOD_PARTS,
    "heads": ("in_dim",),
    "optimizers": ("named_parameters", "batch_size"),
    "schedulers": ("optimizer", "steps_per_epoch", "total_steps"),
}


@dataclass
class TrainerConfig:
    """Settings of the training loop (the recipe's ``trainer:`` section)."""

    max_epochs: int = 100
    max_steps: int | None = None  # stop after this many optimiser steps (overrides max_epochs)
    batch_size: int = 256  # per process and forward pass; a step's global batch is batch_size × processes × accumulate
    accumulate: int = 1  # forward passes per step (GradCache: every view of the step is a negative)
    global_batch_size: int | None = None  # images per step over all processes; sets batch_size and accumulate (resolve_batch)
    max_device_batch: int | None = None  # with global_batch_size: the most images one forward pass may take
    sync_batchnorm: bool = False  # convert BatchNorm to SyncBatchNorm: statistics over all processes (GPU)
    mixed_precision: Literal["no", "fp16", "bf16"] | None = None  # None: the launcher's (accelerate launch / config), else no
    output_dir: str = "runs/simclr"
    num_workers: int | None = None  # DataLoader workers; None picks from the machine
    checkpoint_every: int = 1  # epochs between checkpoints (0: only at the end)
    checkpoint_every_steps: int | None = None  # also checkpoint every N steps (mid-epoch)
    keep_last: int = 2  # complete checkpoints kept on disk
    resume: bool | Literal["auto"] = False  # true: continue the newest intact checkpoint; auto: that if it is of this recipe, else start fresh
    overwrite: bool = False  # start over in an output_dir that holds another run's checkpoints
    log_every: int = 10  # steps between metric records
    speed_warmup_steps: int = 5  # first steps left out of results' views_per_second (warm-up, allocator growth)
    grad_clip: float | None = None  # clip the global gradient norm
    skip_nonfinite: int = 0  # skip up to N steps whose loss is NaN/inf (weights unchanged), then stop
    cpu: bool = False  # force the CPU even when a GPU is present
    channels_last: bool | None = None  # NHWC model and views; None: on for CUDA, off for CPU (measured slower there)
    compile: bool = False  # torch.compile the backbone in place (minutes of compile time; pays off on long GPU runs)
    progress: bool = True  # show a progress bar
    log_with: str | list[str] | None = None  # tracker(s) Accelerate supports (TRACKERS); [] for none; None: tensorboard if installed
    project: str | None = None  # the tracker's project / experiment name; None: output_dir's folder name
    preempt_signals: list[str] = field(default_factory=lambda: ["TERM", "INT", "USR1"])  # save a checkpoint and stop on these
    collective_timeout: float = 600.0  # seconds a collective waits for the other processes before the run stops


#: Trackers of trainer.log_with: Accelerate's, by the name ``accelerate.tracking`` gives them.
TRACKERS = ("tensorboard", "wandb", "mlflow", "aim", "comet_ml", "clearml", "dvclive", "swanlab", "trackio")

TOP_LEVEL_KEYS = ("seed", "data", "method", "augmentation", "views", *[k for k in COMPONENT_KINDS if k != "data"],
                  "predictor", "trainer", "eval", "callbacks", "report")
#: The top-level settings that are plain values: name -> (type, default, what it does), for ``fit --help``.
TOP_LEVEL_SETTINGS: dict[str, tuple[type, Any, str]] = {
    "seed": (int, 0, "seeds the run: model init, views, data order, evaluation splits"),
    "report": (bool, True, "write RUN_DIR/report.html at the end of fit (contrastive report RUN_DIR writes it again)"),
}


@dataclass
class Component:
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ViewGroup:
    """``count`` views per image drawn from one ``augmentation`` pipeline (a ``views:`` entry)."""

    count: int
    augmentation: list[Component]


#: The built-in protocols; plugins add more under the ``protocols`` kind (checked with the registries).
EVAL_PROTOCOLS = ("knn", "linear", "label_free")
#: Run by the evaluation itself (it needs augmented views), not an entry of the ``protocols`` kind.
LABEL_FREE = "label_free"
#: The built-in protocols that need labelled evaluation data.
SUPERVISED_PROTOCOLS = ("knn", "linear")
EVAL_BASELINES = ("random_init", "raw_pixels")


@dataclass
class EvalConfig:
    """Evaluation of the frozen backbone (the recipe's ``eval:`` section); see docs/evaluation.md."""

    # run after fit; [] = none; auto: knn and linear on labelled eval data, label_free on unlabelled
    protocols: list[str] | Literal["auto"] = "auto"
    baselines: list[str] = field(default_factory=lambda: list(EVAL_BASELINES))  # scored beside the learned backbone
    train_data: Component | None = None  # labelled data the probes fit on (default: the training data's train split)
    test_data: Component | None = None  # labelled data they are scored on (default: its test split)
    holdout: float = 0.1  # data without a test split (image_folder): the share held out for evaluation, stratified by class
    holdout_in_training: bool = False  # also pre-train on the held-out images (default: they are left out)
    knn_k: int = 200  # neighbours (clamped to the train size)
    knn_temperature: float = 0.1  # votes weighted by exp(cosine / T)
    linear_weight_decay: float | Literal["auto"] = "auto"  # L2 penalty; auto: picked on a held-out 10% of train
    linear_max_iter: int = 500  # L-BFGS iterations of the linear probe
    linear_solver: Literal["auto", "lbfgs", "minibatch"] = "auto"  # auto: full-batch L-BFGS on small data, mini-batches above (docs/evaluation.md)
    batch_size: int = 256  # images per forward pass when extracting features
    monitor_every: int = 0  # online kNN during fit every N epochs (0: off)
    monitor_max_samples: int | None = None  # cap on train and test images the monitor uses


def _section(raw: Any, cls: type, where: str, components: tuple[str, ...] = ()) -> dict[str, Any]:
    """A settings section (``trainer:``, ``eval:``) checked against the dataclass ``cls``: unknown
    keys get a suggestion, ints become floats where the field is a float, values match the
    field's type hint; the keys in ``components`` hold ``{name, args}`` components."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"'{where}' must be a mapping, got {raw!r}")
    raw = dict(raw)
    fields = [f.name for f in dataclasses.fields(cls)]
    hints = typing.get_type_hints(cls)
    for key, value in raw.items():
        if key not in fields:
            raise RecipeError(f"unknown {where} key '{key}'{did_you_mean(key, fields)} ({where} keys: {', '.join(fields)})")
        if key in components:
            raw[key] = None if value is None else _component(value, f"{where}.{key}")
            continue
        if isinstance(value, int) and not isinstance(value, bool) and matches(0.5, hints[key]):  # a float field
            raw[key] = value = float(value)
        if not matches(value, hints[key]):
            raise RecipeError(f"{where}.{key} should be {type_name(hints[key])}, got {value!r}")
    return raw


def _eval_config(raw: Any) -> EvalConfig:
    raw = _section(raw, EvalConfig, "eval", components=("train_data", "test_data"))
    for item in [] if raw.get("protocols") == "auto" else raw.get("protocols", []):
        if not isinstance(item, str) or not item:
            raise RecipeError(f"eval.protocols: {item!r} is not a protocol name (the built-in ones: {', '.join(EVAL_PROTOCOLS)})")
    for key, allowed in (("baselines", EVAL_BASELINES),):
        for item in raw.get(key, []):
            if item not in allowed:
                raise RecipeError(f"eval.{key}: unknown '{item}'{did_you_mean(str(item), allowed)} (choose from {', '.join(allowed)})")
    config = EvalConfig(**raw)
    for key in ("knn_k", "linear_max_iter", "batch_size"):
        if getattr(config, key) < 1:
            raise RecipeError(f"eval.{key} must be at least 1, got {getattr(config, key)}")
    if config.knn_temperature <= 0:
        raise RecipeError(f"eval.knn_temperature must be > 0, got {config.knn_temperature}")
    if config.linear_weight_decay != "auto" and config.linear_weight_decay < 0:
        raise RecipeError(f"eval.linear_weight_decay must be >= 0 or auto, got {config.linear_weight_decay}")
    if not 0.0 < config.holdout < 1.0:
        raise RecipeError(f"eval.holdout is the share of images held out for evaluation, strictly between 0 and 1 (e.g. 0.1), got {config.holdout}")
    if config.monitor_every < 0:
        raise RecipeError(f"eval.monitor_every must be >= 0 (0: off), got {config.monitor_every}")
    if config.monitor_max_samples is not None and config.monitor_max_samples < 1:
        raise RecipeError(f"eval.monitor_max_samples must be >= 1 or null, got {config.monitor_max_samples}")
    return config


@dataclass
class Recipe:
    """A validated recipe; :meth:`to_dict` gives back the plain resolved mapping."""

    seed: int
    data: Component
    augmentation: list[Component] | None  # one pipeline for all views; None when `views` is given
    backbone: Component
    head: Component | None  # None: absent (a method that takes no head)
    loss: Component | None  # None: absent (a method with its own loss, e.g. moco)
    optimizer: Component
    scheduler: Component
    trainer: TrainerConfig
    eval: EvalConfig = field(default_factory=EvalConfig)
    method: Component = field(default_factory=lambda: Component(DEFAULT_METHOD))
    views: list[ViewGroup] | None = None  # view groups (multi-crop); None when `augmentation` is given
    predictor: Component | None = None
    report: bool = True  # fit writes RUN_DIR/report.html at its end (contrastive.evaluation.report)
    callbacks: list[Component] = field(default_factory=list)  # the `callbacks` kind, run after the built-in ones

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe in recipe order; ``augmentation`` or ``views`` as the recipe gave it."""
        plain = dataclasses.asdict(self)
        order = ["seed", "data", "method", "augmentation" if self.views is None else "views", "backbone",
                 *[k for k in ("head", "loss", "predictor") if getattr(self, k) is not None],
                 "optimizer", "scheduler", "trainer", "eval", *(["callbacks"] if self.callbacks else []), "report"]
        return {key: plain[key] for key in order}

    def view_groups(self, method_views: int) -> list[ViewGroup]:
        """The view groups to draw: the recipe's ``views``, or ``augmentation`` as one group of
        the method's ``method_views`` views."""
        if self.views is not None:
            return self.views
        return [ViewGroup(method_views, self.augmentation)]

    @property
    def global_augmentation(self) -> list[Component]:
        """The pipeline of the first view group: the views the backbone is fitted and evaluated at."""
        return self.views[0].augmentation if self.views is not None else self.augmentation

    @property
    def backbone_in_chans(self) -> int:
        """Input channels the backbone expects (its ``in_chans`` argument, 3 by default)."""
        return int(self.backbone.args.get("in_chans", 3))


# -- loading --------------------------------------------------------------------------------
def builtin_recipes() -> list[str]:
    """Names of the recipes shipped inside the package (``contrastive/recipes/*.yaml``)."""
    root = importlib.resources.files("contrastive") / "recipes"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def read_recipe(path_or_name: str | None) -> dict[str, Any]:
    """Read a recipe file, or a built-in recipe by name (``quickstart``); None -> quickstart."""
    if path_or_name is None:
        path_or_name = "quickstart"
    path = Path(path_or_name)
    if not path.exists():
        if path_or_name in builtin_recipes():
            text = (importlib.resources.files("contrastive") / "recipes" / f"{path_or_name}.yaml").read_text()
            return _parse(text, f"built-in recipe '{path_or_name}'")
        hint = did_you_mean(path.stem, builtin_recipes())
        raise RecipeError(
            f"recipe file '{path_or_name}' does not exist{hint} "
            f"(built-in recipes: {', '.join(builtin_recipes())}; pass a path or one of those names)"
        )
    if path.is_dir():
        raise RecipeError(f"recipe '{path_or_name}' is a directory; pass a YAML file")
    try:
        text = path.read_text()
    except OSError as exc:
        raise RecipeError(f"cannot read recipe '{path_or_name}': {exc.strerror}") from exc
    return _parse(text, f"recipe '{path_or_name}'")


def _parse(text: str, what: str) -> dict[str, Any]:
    try:
        data = yaml_values.load(text)
    except yaml.YAMLError as exc:  # one line: where and what, not PyYAML's multi-line excerpt
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).replace("\n", " ")
        raise RecipeError(f"{what} is not valid YAML{where}: {problem}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{what} must be a mapping of keys ({', '.join(TOP_LEVEL_KEYS)}), got {type(data).__name__}")
    return data


# -- overrides ------------------------------------------------------------------------------
def parse_overrides(tokens: list[str]) -> list[tuple[str, Any]]:
    """Turn ``["--a.b", "1", "--c=x"]`` into ``[("a.b", 1), ("c", "x")]``; values are YAML."""
    pairs: list[tuple[str, Any]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise RecipeError(f"unexpected argument '{token}': overrides look like --trainer.max_epochs 1")
        key = token[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens) or (tokens[i + 1].startswith("--") and len(tokens[i + 1]) > 2):
                raise RecipeError(f"override --{key} needs a value, e.g. --{key} VALUE")
            raw = tokens[i + 1]
            i += 2
        try:
            value = yaml_values.load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        pairs.append((key, value))
    return pairs


def apply_overrides(recipe: dict[str, Any], overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    """Return a copy of ``recipe`` with each dotted ``key`` set to its value."""
    result = copy.deepcopy(recipe)
    for key, value in overrides:
        parts = key.split(".")
        if parts[0] not in TOP_LEVEL_KEYS:
            raise RecipeError(
                f"unknown recipe key '{parts[0]}'{did_you_mean(parts[0], TOP_LEVEL_KEYS)} "
                f"(recipe keys: {', '.join(TOP_LEVEL_KEYS)})"
            )
        node: Any = result
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[: depth + 1]), create=True)
        last = parts[-1]
        if isinstance(node, list):
            index = _index(node, last, key)
            node[index] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise RecipeError(f"cannot set --{key}: '{'.'.join(parts[:-1])}' is a {type(node).__name__}, not a mapping")
    return result


def _index(node: list, part: str, where: str) -> int:
    try:
        index = int(part)
    except ValueError:
        raise RecipeError(f"'{where}': '{part}' must be a list index (0..{len(node) - 1})") from None
    if not -len(node) <= index < len(node):
        raise RecipeError(f"'{where}': index {index} out of range, the list has {len(node)} entries")
    return index


def _child(node: Any, part: str, where: str, create: bool) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, where)]
    if isinstance(node, dict):
        if part not in node or node[part] is None:
            if not create:
                raise RecipeError(f"no key '{where}'")
            node[part] = {}
        return node[part]
    raise RecipeError(f"cannot descend into '{where}': its parent is a {type(node).__name__}")


# -- validation -----------------------------------------------------------------------------
def _component(raw: Any, where: str) -> Component:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise RecipeError(f"'{where}' must be {{name: ..., args: {{...}}}}, got {raw!r}")
    unknown = set(raw) - {"name", "args"}
    if unknown:
        key = sorted(unknown)[0]
        raise RecipeError(f"'{where}' has unknown key '{key}'{did_you_mean(key, ['name', 'args'])}; a component is {{name: ..., args: {{...}}}}")
    if not isinstance(raw.get("name"), str) or not raw["name"]:
        raise RecipeError(f"'{where}.name' is missing: give the registry name of the component")
    args = raw.get("args") or {}
    if not isinstance(args, dict):
        raise RecipeError(f"'{where}.args' must be a mapping of argument names to values, got {args!r}")
    return Component(raw["name"], dict(args))


def _trainer(raw: Any) -> TrainerConfig:
    config = TrainerConfig(**_section(raw, TrainerConfig, "trainer"))
    for key in ("max_epochs", "batch_size", "log_every", "keep_last", "accumulate"):
        if getattr(config, key) < 1:
            raise RecipeError(f"trainer.{key} must be at least 1, got {getattr(config, key)}")
    for key in ("max_steps", "checkpoint_every_steps", "num_workers"):
        value = getattr(config, key)
        if value is not None and value < (0 if key == "num_workers" else 1):
            raise RecipeError(f"trainer.{key} must be {'>= 0' if key == 'num_workers' else '>= 1'} or null, got {value}")
    if config.speed_warmup_steps < 0:
        raise RecipeError(f"trainer.speed_warmup_steps must be >= 0, got {config.speed_warmup_steps}")
    if config.skip_nonfinite < 0:
        raise RecipeError(f"trainer.skip_nonfinite must be >= 0, got {config.skip_nonfinite}")
    if config.checkpoint_every < 0:
        raise RecipeError(f"trainer.checkpoint_every must be >= 0, got {config.checkpoint_every}")
    if not 1 <= config.collective_timeout <= 7 * 24 * 3600:
        raise RecipeError(f"trainer.collective_timeout must be between 1 and 604800 seconds, got {config.collective_timeout}")
    for key in ("global_batch_size", "max_device_batch"):
        value = getattr(config, key)
        if value is not None and value < 1:
            raise RecipeError(f"trainer.{key} must be >= 1 or null, got {value}")
    parse_signals(config.preempt_signals)
    for name in [config.log_with] if isinstance(config.log_with, str) else config.log_with or []:
        if name not in TRACKERS:
            raise RecipeError(f"trainer.log_with: unknown tracker '{name}'{did_you_mean(name, TRACKERS)} (choose from {', '.join(TRACKERS)})")
    return config


def validate(raw: dict[str, Any], registries=None) -> Recipe:
    """Check the structure of ``raw``, and with ``registries`` every name and argument."""
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise RecipeError(f"unknown recipe key '{key}'{did_you_mean(key, TOP_LEVEL_KEYS)} (recipe keys: {', '.join(TOP_LEVEL_KEYS)})")
    if raw.get("augmentation") is not None and raw.get("views") is not None:
        raise RecipeError(
            "the recipe has both 'augmentation' and 'views': give one view pipeline as augmentation, or view "
            "groups as views: [{count: N, augmentation: [...]}, ...] (multi-crop)"
        )
    missing = [k for k in COMPONENT_KINDS if k not in OPTIONAL_COMPONENTS and raw.get(k) is None]
    if raw.get("augmentation") is None and raw.get("views") is None:
        missing.append("augmentation")
    if missing:
        raise RecipeError(f"recipe is missing {', '.join(sorted(set(missing)))} (see recipes/quickstart.yaml for a complete recipe)")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise RecipeError(f"seed should be an integer, got {seed!r}")
    report = raw.get("report", True)
    if not isinstance(report, bool):
        raise RecipeError(f"report should be true or false (write RUN_DIR/report.html at the end of fit), got {report!r}")
    components = {key: _component(raw[key], key) if raw.get(key) is not None else None for key in COMPONENT_KINDS}
    augmentation = _augmentation(raw["augmentation"], "augmentation") if raw.get("augmentation") is not None else None
    views = _views(raw["views"]) if raw.get("views") is not None else None
    method_raw = raw.get("method")
    if isinstance(method_raw, dict) and "name" not in method_raw:  # --method.args.x alone: args of the default
        method_raw = {"name": DEFAULT_METHOD, **method_raw}
    method = _component(method_raw, "method") if method_raw is not None else Component(DEFAULT_METHOD)
    predictor = _component(raw["predictor"], "predictor") if raw.get("predictor") is not None else None
    eval_config = _eval_config(raw.get("eval"))
    callbacks = _callbacks(raw.get("callbacks"))
    recipe = Recipe(seed=seed, augmentation=augmentation, trainer=_trainer(raw.get("trainer")), eval=eval_config,
                    method=method, views=views, predictor=predictor, report=report, callbacks=callbacks, **components)
    if registries is not None:
        check_components(recipe, registries)
    return recipe


def _augmentation(raw: Any, where: str) -> list[Component]:
    if not isinstance(raw, list) or not raw:
        raise RecipeError(f"'{where}' must be a non-empty list of {{name: ..., args: {{...}}}} entries (applied in order)")
    return [_component(a, f"{where}.{i}") for i, a in enumerate(raw)]


def _callbacks(raw: Any) -> list[Component]:
    """``callbacks: [{name, args}, ...]`` (absent or null: none)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RecipeError(f"'callbacks' must be a list of {{name: ..., args: {{...}}}} entries (run in order), got {raw!r}")
    return [_component(c, f"callbacks.{i}") for i, c in enumerate(raw)]


def _views(raw: Any) -> list[ViewGroup]:
    shape = "views: [{count: 2, augmentation: [...]}, {count: 6, augmentation: [...]}]"
    if not isinstance(raw, list) or not raw:
        raise RecipeError(f"'views' must be a non-empty list of view groups, e.g. {shape}")
    groups = []
    for i, group in enumerate(raw):
        where = f"views.{i}"
        if not isinstance(group, dict):
            raise RecipeError(f"'{where}' must be a mapping {{count: N, augmentation: [...]}}, got {group!r}")
        unknown = sorted(set(group) - {"count", "augmentation"})
        if unknown:
            raise RecipeError(
                f"'{where}' has unknown key '{unknown[0]}'{did_you_mean(unknown[0], ['count', 'augmentation'])}; "
                f"a view group is {{count: N, augmentation: [...]}}"
            )
        count = group.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise RecipeError(f"'{where}.count' must be a positive int (views drawn per image), got {count!r}")
        if group.get("augmentation") is None:
            raise RecipeError(f"'{where}' is missing augmentation: the list of steps its views are drawn with")
        groups.append(ViewGroup(count, _augmentation(group["augmentation"], f"{where}.augmentation")))
    return groups


def _augmentation_entries(recipe: Recipe) -> list[tuple[str, Component]]:
    if recipe.views is None:
        return [(f"augmentation.{i}", c) for i, c in enumerate(recipe.augmentation)]
    return [(f"views.{g}.augmentation.{i}", c) for g, group in enumerate(recipe.views) for i, c in enumerate(group.augmentation)]


def check_components(recipe: Recipe, registries) -> None:
    """Raise a :class:`RecipeError` naming the recipe key for any unknown name or bad argument."""
    from contrastive.errors import ContrastiveError

    entries = [(key, kind, c) for key, kind in {**COMPONENT_KINDS, **OPTIONAL_COMPONENTS}.items()
               if (c := getattr(recipe, key)) is not None]
    entries += [(where, "augmentations", c) for where, c in _augmentation_entries(recipe)]
    entries += [(f"eval.{key}", "datasets", c) for key in ("train_data", "test_data") if (c := getattr(recipe.eval, key))]
    entries += [(f"callbacks.{i}", "callbacks", c) for i, c in enumerate(recipe.callbacks)]
    for where, kind, component in entries:
        try:
            registries[kind].check_args(component.name, component.args, injected=INJECTED_ARGS.get(kind, ()))
        except ContrastiveError as exc:
            raise RecipeError(f"{where}: {exc}") from exc
        injected = set(INJECTED_ARGS.get(kind, ())) & set(component.args)
        if injected:
            raise RecipeError(f"{where}.args.{sorted(injected)[0]} is supplied by the engine; remove it from the recipe")
    check_protocols(recipe.eval.protocols, registries)
    _check_method_parts(recipe, registries)


def check_protocols(protocols: list[str] | str, registries) -> None:
    """Every name of ``eval.protocols`` is ``label_free`` or registered under ``protocols``."""
    known = [*registries.protocols.names(), LABEL_FREE]
    for name in [] if protocols == "auto" else protocols:
        if name not in known:
            raise RecipeError(f"eval.protocols: unknown '{name}'{did_you_mean(name, known)} (choose from "
                              f"{', '.join(known)}; contrastive list protocols)")


def method_parts(factory: Any) -> dict[str, bool]:
    """The built parts (:data:`METHOD_PARTS`) a method's signature names, each with whether it
    is required (no default)."""
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    return {name: params[name].default is inspect.Parameter.empty for name in METHOD_PARTS if name in params}


def _predictor_example(head: Component | None) -> str:
    """A predictor that fits ``head``: it maps projections to projections, so its out_dim is the
    head's (4096 hidden, MoCo v3's and NNCLR's, unless the head states a hidden_dim)."""
    args = head.args if head is not None else {}
    out_dim, hidden_dim = args.get("out_dim", 256), args.get("hidden_dim", 4096)
    return f"{{name: mlp, args: {{hidden_dim: {hidden_dim}, out_dim: {out_dim}}}}}"


def _check_method_parts(recipe: Recipe, registries) -> None:
    """A predictor the method needs is in the recipe, and one it would ignore is not."""
    name = recipe.method.name
    parts = method_parts(registries.methods.get(name))
    if "backbone" not in parts:
        raise RecipeError(f"method '{name}' takes no backbone argument; a method's __init__ must accept backbone")
    examples = {"head": "{name: mlp, args: {hidden_dim: 2048, out_dim: 128}}", "loss": "{name: ntxent}",
                "predictor": _predictor_example(recipe.head)}
    kinds = {"head": "heads", "loss": "losses", "predictor": "heads"}
    for part, example in examples.items():
        if getattr(recipe, part) is None and parts.get(part):
            raise RecipeError(
                f"method '{name}' needs a {part}; add {part}: {example} to the recipe, or --{part} '{example}' "
                f"on the command line (contrastive list {kinds[part]})"
            )
    if recipe.predictor is not None and "predictor" not in parts:
        raise RecipeError(f"method '{name}' takes no predictor: remove predictor from the recipe (or choose a method that uses one)")


def load(path_or_name: str | None, overrides: list[str] | None = None, registries=None) -> Recipe:
    """Read, override and validate a recipe in one call."""
    raw = apply_overrides(read_recipe(path_or_name), parse_overrides(list(overrides or [])))
    return validate(raw, registries)


def resolve_batch(trainer: TrainerConfig, processes: int) -> TrainerConfig:
    """``trainer`` with ``batch_size`` and ``accumulate`` derived from ``global_batch_size`` for
    ``processes`` processes (unchanged when it is null): each process takes G / P images a step,
    in the fewest forward passes of at most ``max_device_batch`` images that divide it evenly
    (GradCache keeps every view of the step a negative for every other).  A global batch that
    the processes cannot share evenly is a :class:`RecipeError`."""
    total = trainer.global_batch_size
    if total is None:
        return trainer
    if total % processes:
        raise RecipeError(
            f"trainer.global_batch_size {total} cannot be shared by {processes} processes evenly; "
            f"use a multiple of {processes} or another number of processes"
        )
    per_process = total // processes
    limit = trainer.max_device_batch or per_process
    chunks = next(k for k in range(-(-per_process // limit), per_process + 1) if per_process % k == 0)
    if chunks > 1 and per_process // chunks < limit // 2:  # e.g. a prime per-process batch: passes of 1 image
        step = processes * limit
        raise RecipeError(
            f"trainer.global_batch_size {total} on {processes} process(es) splits only into forward passes of "
            f"{per_process // chunks} images (max_device_batch {limit}); use a multiple of {step}, e.g. {max(step, total // step * step)}"
        )
    return dataclasses.replace(trainer, batch_size=per_process // chunks, accumulate=chunks)


def batch_resolution(resolved: TrainerConfig, processes: int) -> str:
    """One line: how a step's global batch is made on ``processes`` processes (``resolved``: a
    :func:`resolve_batch` result)."""
    total = resolved.batch_size * processes * resolved.accumulate
    return (f"global batch {total} = {processes} process{'es' if processes > 1 else ''} x batch_size "
            f"{resolved.batch_size} x accumulate {resolved.accumulate}")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested recipe mapping as ``{"loss.args.temperature": 0.5, "augmentation.0.name": ...}``;
    list items by index; an empty mapping or list stays a leaf (so that it can differ)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(value, (list, tuple)):
        out = {}
        for index, inner in enumerate(value):
            out.update(flatten(inner, f"{prefix}.{index}"))
        return out or {prefix: []}
    return {prefix: value}


def settings_help() -> str:
    """The recipe's top-level keys, its top-level settings (``seed``, ``report``) and every
    ``trainer.*`` / ``eval.*`` setting with its type and default, for ``contrastive fit --help``."""
    lines = ["recipe keys (any of them: --KEY.SUB VALUE; contrastive list KIND for the names):",
             "  " + ", ".join(TOP_LEVEL_KEYS), "", "top-level settings:"]
    for name, (kind, default, what) in TOP_LEVEL_SETTINGS.items():
        shown = yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
        lines.append(f"  --{name:32s} {type_name(kind)} (default: {shown}): {what}")
    lines.append("")
    for section, cls in (("trainer", TrainerConfig), ("eval", EvalConfig)):
        lines.append(f"{section} settings:")
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            shown = "null" if default is None else yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
            lines.append(f"  --{section}.{f.name:24s} {type_name(hints[f.name])} (default: {shown})")
        lines.append("")
    return "\n".join(lines).rstrip()


def dump(recipe: Recipe) -> str:
    """The resolved recipe as YAML, keys in recipe order."""
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False, default_flow_style=None)
