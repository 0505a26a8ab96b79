"""The recipe's shape: the dataclasses a validated recipe is made of (:class:`Recipe`,
:class:`TrainerConfig`, :class:`EvalConfig`, :class:`Component`, :class:`ViewGroup`) and the
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
    batch_size: int = 256  # images per forward pass when extracting features
    monitor_every: int = 0  # online kNN during fit every N epochs (0: off)
    monitor_max_samples: int | None = None  # cap on train and test images the monitor uses


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
