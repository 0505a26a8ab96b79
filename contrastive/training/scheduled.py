"""The recipe's scheduled and learned values during fit ([`ScheduledValues`][contrastive.training.scheduled.ScheduledValues]).

Before every optimiser step — the first step after a resume included — the loop sets each
scheduled argument to its value at that step ([`contrastive.schedules`][contrastive.schedules]):

* ``method.args.X`` and ``loss.args.X``: the attribute ``X`` of the built method or loss (the
  component keeps the argument as a float attribute of that name; one that does not is refused
  when the run is built, so setting it cannot silently do nothing);
* ``optimizer.args.weight_decay``: every param group built with a non-zero weight decay (groups
  without decay — biases and norm weights — stay at 0).

The values depend on the step alone, so a resumed run sets exactly the values of an uninterrupted
one.  Learned values (``loss.args.temperature: learned``) are parameters of their component,
trained by the optimiser (at ``lr_scale`` × their group's lr: [`with_learned_options`][contrastive.training.scheduled.with_learned_options])
and kept in checkpoints; after every applied optimiser step the loop
clamps every [`LearnedScalar`][contrastive.components.learned.LearnedScalar] of the method back within its bounds.
[`record`][contrastive.training.scheduled.ScheduledValues.record] gives the values the last step used, for metrics.jsonl
and the tracker: ``schedule/loss.temperature``, ``schedule/optimizer.weight_decay``,
``learned/loss.temperature``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from contrastive.components.learned import LearnedScalar
from contrastive.errors import RecipeError
from contrastive.recipe.scheduled import ScheduledArg, learned_args, scheduled_args

if TYPE_CHECKING:
    from contrastive.recipe import Recipe


def _attribute_setter(item: ScheduledArg, target: nn.Module, name: str) -> Callable[[float], None]:
    """Sets ``target.<arg>``, after checking that the component keeps the argument as that float attribute."""
    kept = getattr(target, item.arg, None)
    if isinstance(kept, bool) or not isinstance(kept, float) or kept != item.schedule.first:
        raise RecipeError(
            f"{item.where} cannot follow a schedule: {item.component} '{name}' does not keep it as the float "
            f"attribute '{item.arg}' (it holds {kept!r}, built with {item.schedule.first:g}), which the loop sets "
            f"every step; give a number"
        )

    def set_value(value: float) -> None:
        setattr(target, item.arg, value)

    return set_value


def _weight_decay_setter(optimizer: torch.optim.Optimizer) -> Callable[[float], None]:
    """Sets the weight decay of every group built with a non-zero one (built with the schedule's
    largest value).  The groups are found by position at every call: restoring a checkpoint
    (``load_state_dict``) replaces the optimizer's group mappings with new ones."""
    decaying = [i for i, group in enumerate(optimizer.param_groups) if group.get("weight_decay", 0) != 0]

    def set_value(value: float) -> None:
        groups = optimizer.param_groups
        for i in decaying:
            groups[i]["weight_decay"] = value

    return set_value


def with_learned_options(method: nn.Module, options_of: Callable[[str, nn.Parameter], dict]) -> Callable[[str, nn.Parameter], dict]:
    """``options_of`` (the method's ``param_group_options``) with each learned value's ``lr_scale``
    multiplied in, for [`split_param_groups`][contrastive.training.lr_groups.split_param_groups]."""
    scales = {id(m.log_value): m.spec.lr_scale for m in method.modules() if isinstance(m, LearnedScalar)}

    def options(name: str, parameter: nn.Parameter) -> dict:
        found = dict(options_of(name, parameter) or {})
        if scales.get(id(parameter), 1.0) != 1.0:
            found["lr_scale"] = float(found.get("lr_scale", 1.0)) * scales[id(parameter)]
        return found

    return options


class ScheduledValues:
    """Sets the scheduled values before each step, clamps the learned ones after it, and reports both.

    Build it with [`for_run`][contrastive.training.scheduled.ScheduledValues.for_run] once the method, its loss and the
    optimizer exist and the run's length is known.
    """

    def __init__(self, steps_per_epoch: int, total_steps: int,
                 scheduled: list[tuple[ScheduledArg, Callable[[float], None]]] = (),
                 learned: list[tuple[str, LearnedScalar]] = (), clamped: list[LearnedScalar] = ()) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = total_steps
        self.scheduled = list(scheduled)
        self.learned = list(learned)  # (metric key, module) of the recipe's learned values
        self.clamped = list(clamped)  # every learned scalar of the method
        self._used: dict[str, float] = {}
        self._used_learned: dict[str, torch.Tensor] = {}

    @classmethod
    def for_run(cls, recipe: Recipe, method: nn.Module, loss: nn.Module | None, optimizer: torch.optim.Optimizer,
                steps_per_epoch: int, total_steps: int) -> ScheduledValues:
        """The recipe's schedules bound to the built ``method``, ``loss`` (None: the method took none,
        and the loss's schedules are not used) and ``optimizer``; a component that does not keep a
        scheduled argument as a float attribute of its name is a [`RecipeError`][contrastive.errors.RecipeError]."""
        targets = {"method": (method, recipe.method.name), "loss": (loss, recipe.loss.name if recipe.loss else "")}
        scheduled = []
        for item in scheduled_args(recipe):
            if item.component == "optimizer":
                scheduled.append((item, _weight_decay_setter(optimizer)))
                continue
            target, name = targets[item.component]
            if target is not None:
                scheduled.append((item, _attribute_setter(item, target, name)))
        learned = []
        for item in learned_args(recipe):
            target, name = targets[item.component]
            if target is None:
                continue
            module = getattr(target, f"learned_{item.arg}", None)
            if not isinstance(module, LearnedScalar):
                raise RecipeError(f"{item.where}: {item.component} '{name}' declares {item.arg} learnable but keeps no "
                                  f"LearnedScalar learned_{item.arg} (a bug of the component: see contrastive.components.learned)")
            learned.append((item.metric, module))
        clamped = [m for m in method.modules() if isinstance(m, LearnedScalar)]
        return cls(steps_per_epoch, total_steps, scheduled, learned, clamped)

    def set_for_step(self, step: int) -> None:
        """Set every scheduled value to its value at ``step`` (0-based: the step about to be taken)."""
        for item, set_value in self.scheduled:
            value = item.schedule.at(step, self.steps_per_epoch, self.total_steps)
            set_value(value)
            self._used[item.metric] = value
        for metric, module in self.learned:  # the value the step uses, read (a device sync) only when logged
            with torch.no_grad():
                self._used_learned[metric] = module()

    def after_update(self) -> None:
        """After an applied optimiser step: every learned value back within its bounds (as CLIP clamps its logit scale)."""
        for module in self.clamped:
            module.clamp_()

    def record(self) -> dict[str, float]:
        """``{metric key: value}`` of the values the last step used."""
        return {**self._used, **{metric: float(value) for metric, value in self._used_learned.items()}}
