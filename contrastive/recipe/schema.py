"""The recipe's shape: the dataclasses a validated recipe is made of ([`Recipe`][contrastive.recipe.schema.Recipe],
[`TrainerConfig`][contrastive.recipe.schema.TrainerConfig], [`EvalConfig`][contrastive.recipe.schema.EvalConfig], `Component`, [`ViewGroup`][contrastive.recipe.schema.ViewGroup]) and the
constants that name its keys and the registry kind each component key names.

Standard library only: no torch, no YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

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


#: Trackers of trainer.log_with: Accelerate's, by the name ``accelerate.tracking`` gives them.
TRACKERS = ("tensorboard", "wandb", "mlflow", "aim", "comet_ml", "clearml", "dvclive", "swanlab", "trackio")


def setting(
    default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING, what: str = "", **bounds: Any
) -> Any:
    """A section field: its ``default`` (or a ``factory`` of it), the ``help`` line ``contrastive fit
    --help`` shows, and its bounds (``min``, ``max``, ``gt``, ``lt``; see [`contrastive.bounds`][contrastive.bounds]),
    all kept in the field's ``metadata`` and checked by one loop when a recipe is validated; an
    optional ``what`` (a noun phrase) says what the setting is in the out-of-range message."""
    return field(default=default, default_factory=factory, metadata={"help": help, **({"what": what} if what else {}), **bounds})


@dataclass
class TrainerConfig:
    """Settings of the training loop (the recipe's ``trainer:`` section)."""

    max_epochs: int = setting(100, "passes over the training data", min=1)
    max_steps: int | None = setting(None, "stop after this many optimiser steps (overrides max_epochs)", min=1)
    batch_size: int = setting(
        256, "images per process and forward pass; a step's global batch is batch_size x processes x accumulate", min=1
    )
    accumulate: int = setting(1, "forward passes per step (GradCache: every view of the step is a negative)", min=1)
    global_batch_size: int | None = setting(
        None, "images per step over all processes; sets batch_size and accumulate for the processes at hand", min=1
    )
    max_device_batch: int | None = setting(None, "with global_batch_size: the most images one forward pass may take", min=1)
    sync_batchnorm: bool = setting(False, "convert BatchNorm to SyncBatchNorm: statistics over all processes (GPU)")
    mixed_precision: Literal["no", "fp16", "bf16"] | None = setting(
        None, "autocast precision; null: the launcher's (accelerate launch / its config), else no"
    )
    output_dir: str = setting("runs/simclr", "the run directory: config.yaml, checkpoints, weights, results, logs")
    num_workers: int | None = setting(None, "DataLoader worker processes; null picks from the machine", min=0)
    checkpoint_every: int = setting(1, "epochs between checkpoints (0: only at the end)", min=0)
    checkpoint_every_steps: int | None = setting(None, "also checkpoint every N optimiser steps (mid-epoch)", min=1)
    keep_last: int = setting(2, "complete checkpoints kept on disk", min=1)
    resume: bool | Literal["auto"] = setting(
        False, "true: continue the newest intact checkpoint; auto: that if it is of this recipe, else start fresh"
    )
    overwrite: bool = setting(False, "start over in an output_dir that holds another run's checkpoints")
    log_every: int = setting(10, "optimiser steps between metric records", min=1)
    speed_warmup_steps: int = setting(
        5, "first steps left out of the results' views_per_second (warm-up, allocator growth)", min=0
    )
    grad_clip: float | None = setting(None, "clip the global gradient norm to this value; null: no clipping")
    skip_nonfinite: int = setting(0, "skip up to N steps whose loss is NaN/inf (weights unchanged), then stop", min=0)
    cpu: bool = setting(False, "force the CPU even when a GPU is present")
    channels_last: bool | None = setting(
        None, "NHWC model and views; null: on for CUDA, off for the CPU (measured slower there)"
    )
    compile: bool = setting(
        False, "torch.compile the backbone (minutes of compile time; pays off on long GPU runs)"
    )
    progress: bool = setting(True, "show a progress bar")
    log_with: str | list[str] | None = setting(
        None, f"tracker(s) to log to ({', '.join(TRACKERS)}); []: none; null: tensorboard if installed"
    )
    project: str | None = setting(None, "the tracker's project / experiment name; null: output_dir's folder name")
    preempt_signals: list[str] = setting(
        help="signals on which the run saves a checkpoint and stops (TERM, INT, USR1, USR2, HUP, QUIT)",
        factory=lambda: ["TERM", "INT", "USR1"],
    )
    collective_timeout: float = setting(
        600.0, "seconds a collective waits for the other processes before the run stops", min=1, max=7 * 24 * 3600
    )



TOP_LEVEL_KEYS = ("seed", "data", "method", "augmentation", "views", *[k for k in COMPONENT_KINDS if k != "data"],
                  "predictor", "trainer", "eval", "callbacks", "report")
#: Top-level keys of a run's ``config.yaml`` that a recipe file may hold and validation skips:
#: ``plan`` is what fit computed for the run, recomputed every time and never read as settings.
IGNORED_KEYS = ("plan",)
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

    protocols: list[str] | Literal["auto"] = setting(
        "auto", "protocols run after fit; []: none; auto: knn and linear on labelled eval data, label_free on unlabelled"
    )
    baselines: list[str] = setting(
        help="baselines scored beside the learned backbone (random_init, raw_pixels)", factory=lambda: list(EVAL_BASELINES)
    )
    train_data: Component | None = setting(
        None, "labelled data {name, args} the probes fit on; null: the training data's train split"
    )
    test_data: Component | None = setting(None, "labelled data {name, args} they are scored on; null: its test split")
    holdout: float = setting(
        0.1, "data without a test split (image_folder): the share held out for evaluation, stratified by class", gt=0, lt=1,
        what="the share of images held out for evaluation",
    )
    holdout_in_training: bool = setting(False, "also pre-train on the held-out images (default: they are left out)")
    knn_k: int = setting(200, "neighbours of the kNN protocol (clamped to the train size)", min=1)
    knn_temperature: float = setting(0.1, "kNN votes are weighted by exp(cosine / T)", gt=0)
    linear_weight_decay: float | Literal["auto"] = setting(
        "auto", "L2 penalty of the linear probe; auto: picked on a held-out 10% of train", min=0
    )
    linear_max_iter: int = setting(500, "L-BFGS iterations of the linear probe", min=1)
    linear_solver: Literal["auto", "lbfgs", "minibatch"] = setting(
        "auto", "auto: full-batch L-BFGS on small data, mini-batches on the device above (docs/evaluation.md)"
    )
    batch_size: int = setting(256, "images per forward pass when extracting features", min=1)
    monitor_every: int = setting(0, "online kNN during fit every N epochs (0: off)", min=0)
    monitor_max_samples: int | None = setting(None, "cap on the train and test images the monitor uses; null: all", min=1)
    online_linear: bool = setting(
        True, "train a linear probe during fit on the detached backbone features of the views (labelled data; off on unlabelled)"
    )
    online_linear_lr: float = setting(1e-3, "learning rate of the online linear probe's own AdamW", gt=0)
    linear_augmented_epochs: int = setting(
        10, "epochs of the linear_augmented protocol's head (the papers at ImageNet scale: 90-100)", min=1
    )
    linear_augmented_lr: float = setting(0.1, "its SGD (Nesterov) learning rate, cosine-decayed per step", gt=0)
    linear_augmented_weight_decay: float = setting(0.0, "its weight decay", min=0)
    linear_augmented_batch_size: int = setting(256, "its images per step", min=1)
    finetune_epochs: int = setting(5, "epochs of the finetune protocol (backbone copy + linear head)", min=1)
    finetune_lr: float = setting(0.01, "its SGD (Nesterov) learning rate, cosine-decayed per step", gt=0)
    finetune_weight_decay: float = setting(0.0, "its weight decay", min=0)
    finetune_batch_size: int = setting(256, "its images per step", min=1)
    finetune_layer_decay: float | None = setting(
        None, "layer-wise lr decay of finetune (timm backbones with layer groups; null: one lr)", gt=0, max=1
    )
    collective_timeout: float = setting(
        86400.0, "seconds a process waits for the others during an evaluation (all processes extract and score it "
        "together; not the training collective timeout)", min=1, max=7 * 24 * 3600
    )


@dataclass
class Recipe:
    """A validated recipe; [`to_dict`][contrastive.recipe.schema.Recipe.to_dict] gives back the plain resolved mapping."""

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
