"""One `RunPlan` per run: what ``fit`` trains on and at what size, computed once (by
`compute_plan`, before the backbone and the method are built) and recorded as the ``plan:``
section of the run's ``config.yaml``, where ``contrastive eval``, ``embed``, ``export`` and
``report`` read it back (`recorded_plan`; a run written before plans existed gets its plan
computed from its recipe by the same function).

The plan holds the decisions that used to be made in several places: the training data (which
images evaluation holds out), the evaluation data and the resolved protocols (and whether the
online kNN runs), each view group's view size (its pipeline run once on one probe image under
``torch.random.fork_rng``: the training RNG is untouched), the normalisation step (found by the
marker `NORMALIZES` on the built augmentation, not by its registry name), the resolved batch
and accumulation, the precision and the process count.  Computing a plan never changes the recipe:
`RunPlan.applied_to` gives the run's recipe as a new object."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from contrastive.components.datasets.contract import dataset_info
from contrastive.components.datasets.stream import is_stream
from contrastive.errors import RecipeError

if TYPE_CHECKING:
    from contrastive.registry import Registries

#: The attribute an augmentation sets (true) to say it is the pipeline's normalisation step;
#: ``mean`` and ``std`` attributes (per channel) then give its statistics (export's mean/std).
NORMALIZES = "normalizes"


def is_normalization(step: Any) -> bool:
    """Whether the built augmentation ``step`` is a normalisation step (it sets `NORMALIZES`)."""
    return bool(getattr(step, NORMALIZES, False))


@dataclass(frozen=True)
class Normalization:
    """The first view group's normalisation step: its position in the pipeline and its statistics."""

    index: int
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None


@dataclass(frozen=True)
class RunPlan:
    """What a run trains on and at what size (see the module docstring).  ``kept`` (the training
    indices when evaluation holds images out) and ``notes`` live in memory only: ``holdout``
    describes the split, which `holdout_split` redraws exactly."""

    view_sizes: tuple[tuple[int, int], ...]  # (H, W) per view group; [0]: the size the backbone is fitted and evaluated at
    normalization: Normalization | None
    batch_size: int  # per process and forward pass (resolve_batch)
    accumulate: int
    processes: int
    precision: str  # the mixed precision the run uses (recipe, else the launcher's, else no)
    data: str  # the training dataset's name
    stream: bool  # the training data is a stream (an IterableDataset)
    holdout: dict[str, Any] | None  # {fraction, seed, in_training, num_held_out, num_kept}; None: nothing held out
    eval_train_data: dict[str, Any] | None  # {name, args} of evaluation's train data (None: evaluation off)
    eval_test_data: dict[str, Any] | None
    protocols: tuple[str, ...]  # of the final evaluation, resolved (auto -> knn/linear or label_free); (): none
    monitor: bool  # the online kNN runs
    eval_off: str | None = None  # why evaluation cannot run at all (a stream without test data), else None
    kept: tuple[int, ...] | None = field(default=None, compare=False, repr=False)
    notes: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def view_size(self) -> tuple[int, int]:
        return self.view_sizes[0]

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.processes * self.accumulate

    def to_dict(self) -> dict[str, Any]:
        """Plain values for ``config.yaml`` (lists for tuples); ``kept`` and ``notes`` are left out."""
        plain = dataclasses.asdict(self)
        plain.pop("kept"), plain.pop("notes")
        plain["view_sizes"] = [list(s) for s in self.view_sizes]
        plain["protocols"] = list(self.protocols)
        if self.normalization is not None:
            plain["normalization"] = {"index": self.normalization.index,
                                      "mean": None if self.normalization.mean is None else list(self.normalization.mean),
                                      "std": None if self.normalization.std is None else list(self.normalization.std)}
        return plain

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunPlan:
        try:
            values = dict(raw)
            norm = values.get("normalization")
            values["normalization"] = None if norm is None else Normalization(
                int(norm["index"]), None if norm.get("mean") is None else tuple(norm["mean"]),
                None if norm.get("std") is None else tuple(norm["std"]))
            values["view_sizes"] = tuple((int(h), int(w)) for h, w in values["view_sizes"])
            values["protocols"] = tuple(values.get("protocols") or ())
            known = {f.name for f in dataclasses.fields(cls)} - {"kept", "notes"}
            return cls(**{k: v for k, v in values.items() if k in known})
        except (KeyError, TypeError, ValueError) as exc:
            raise RecipeError(f"the run's plan cannot be read ({exc!r}); delete the plan: section to recompute it") from exc

    def trainer(self, recipe):
        """The recipe's trainer section with the resolved batch (a new object)."""
        return dataclasses.replace(recipe.trainer, batch_size=self.batch_size, accumulate=self.accumulate)

    def applied_to(self, recipe):
        """The run's recipe, a new object (``recipe`` is not changed): the resolved batch, and
        evaluation switched off (``eval.protocols []``, ``eval.monitor_every 0``) when it cannot run."""
        changes: dict[str, Any] = {"trainer": self.trainer(recipe)}
        if self.eval_off:
            changes["eval"] = dataclasses.replace(recipe.eval, protocols=[], monitor_every=0)
        return dataclasses.replace(recipe, **changes)


# -- computing --------------------------------------------------------------------------------
def probe_item(dataset) -> tuple[torch.Tensor, float | None]:
    """One ``(C, H, W)`` uint8 image of the training data (item 0; a stream's first sample) and its
    source aspect for whole-image data (None otherwise)."""
    whole = dataset_info(dataset).whole_image
    if is_stream(dataset):
        image, _, aspect = dataset.first_item()
    elif whole:
        image, _, aspect = dataset.load_item(0)
    else:
        image, aspect = dataset[0][0], None
    return image, (aspect if whole else None)


def view_sizes(pipelines, image: torch.Tensor, aspect: float | None = None) -> tuple[tuple[int, int], ...]:
    """``(H, W)`` each pipeline makes of ``image`` (also checks each takes the data), under
    ``fork_rng``: the global RNG is left as it was."""
    kwargs = {"source_aspect": torch.tensor([aspect])} if aspect is not None else {}
    with torch.random.fork_rng(devices=[]):
        return tuple(tuple(int(v) for v in p(image[None], **kwargs)[0].shape[-2:]) for p in pipelines)


def normalization_of(steps) -> Normalization | None:
    """The last step of ``steps`` (built augmentations) that `is_normalization`, or None."""
    found = [(i, s) for i, s in enumerate(steps) if is_normalization(s)]
    if not found:
        return None
    index, step = found[-1]

    def stats(name: str) -> tuple[float, ...] | None:
        value = getattr(step, name, None)
        return None if value is None else tuple(float(x) for x in torch.as_tensor(value).flatten().tolist())

    return Normalization(index, stats("mean"), stats("std"))


def build_pipelines(recipe, registries: Registries):
    """Each view group's `ViewPipeline` (and the groups), as training builds them."""
    from contrastive.components.augmentations.views import ViewPipeline

    factory = registries.methods.get(recipe.method.name)
    groups = recipe.view_groups(int(getattr(factory, "views", 2)))
    pipelines = [ViewPipeline([registries.augmentations.build(a.name, **a.args) for a in g.augmentation])
                 for g in groups]
    return groups, pipelines


def compute_plan(recipe, registries: Registries, *, processes: int = 1, precision: str | None = None, dataset=None,
                 pipelines=None) -> RunPlan:
    """The plan of ``recipe`` on ``processes`` processes.  ``dataset``: the training dataset when
    the caller has built it (else it is built here); ``pipelines``: the view pipelines likewise.
    Raises what [`plan_eval`][contrastive.evaluation.data.plan_eval] and [`resolve_batch`][contrastive.recipe.batch.resolve_batch]
    raise for a bad set-up; the recipe is not changed."""
    from contrastive.evaluation.data import eval_data_components, plan_eval
    from contrastive.recipe import resolve_batch

    trainer = resolve_batch(recipe.trainer, processes)
    if precision is None:
        import os

        precision = recipe.trainer.mixed_precision or os.environ.get("ACCELERATE_MIXED_PRECISION") or "no"
    if dataset is None:
        dataset = registries.datasets.build(recipe.data.name, **recipe.data.args)
    evaluation = plan_eval(recipe, registries, dataset)
    if pipelines is None:
        pipelines = build_pipelines(recipe, registries)[1]
    training = dataset  # the images fit trains on: without evaluation's held-out ones, as fit reads them
    if evaluation.kept is not None and not recipe.eval.holdout_in_training:
        from contrastive.evaluation.holdout import subset

        training = subset(dataset, list(evaluation.kept))
    image, aspect = probe_item(training)
    sizes = view_sizes(pipelines, image, aspect)
    holdout, kept = None, None
    if evaluation.kept is not None:
        kept = tuple(evaluation.kept)
        holdout = {"fraction": recipe.eval.holdout, "seed": recipe.seed, "in_training": recipe.eval.holdout_in_training,
                   "num_held_out": len(dataset) - len(kept), "num_kept": len(kept)}
    train_c = test_c = None
    if not evaluation.off:  # also when fit does not evaluate: `contrastive eval` may later
        train_c, test_c = ({"name": c.name, "args": dict(c.args)} for c in eval_data_components(recipe, registries))
    return RunPlan(
        view_sizes=sizes, normalization=normalization_of(list(pipelines[0].steps)), batch_size=trainer.batch_size,
        accumulate=trainer.accumulate, processes=processes, precision=str(precision), data=recipe.data.name,
        stream=is_stream(dataset), holdout=holdout, eval_train_data=train_c,
        eval_test_data=test_c, protocols=tuple(evaluation.protocols), monitor=evaluation.monitor,
        eval_off=evaluation.notes[0] if evaluation.off else None, kept=kept, notes=tuple(evaluation.notes),
    )


def recorded_plan(config: dict[str, Any] | None, recipe, registries: Registries) -> RunPlan:
    """The plan a run's ``config.yaml`` (``config``, the mapping) records; for a run written before
    plans were recorded, the plan computed from its ``recipe`` (with the launch it records)."""
    raw = (config or {}).get("plan")
    if isinstance(raw, dict):
        return RunPlan.from_dict(raw)
    launch = (config or {}).get("launch") or {}
    processes = int(launch.get("processes", 1)) if isinstance(launch, dict) else 1
    precision = launch.get("mixed_precision") if isinstance(launch, dict) else None
    return compute_plan(recipe, registries, processes=processes, precision=precision or "no")
