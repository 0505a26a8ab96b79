"""Scalar values that change over training: schedules written in a recipe, and learned values.

A *schedule* is a recipe mapping with a ``schedule`` key, written where a number goes — any
numeric argument of ``method.args`` or ``loss.args``, and ``optimizer.args.weight_decay``:

    loss: {name: ntxent, args: {temperature: {schedule: cosine, start: 0.5, end: 0.1}}}

Its value is a function of the optimiser step alone (``s`` = 0, 1, ... ``T`` − 1 of a run of
``T`` steps, ``E`` steps an epoch), so a resumed run continues it exactly:

| ``schedule`` | keys | value at step ``s`` |
|---|---|---|
| ``constant`` | ``value`` | ``value`` |
| ``linear`` | ``start``, ``end``; optional warm-up | ``start`` at the first step after the warm-up to ``end`` at the last step, on a line |
| ``cosine`` | as ``linear`` | the same ends, on a half cosine: ``start + (end − start)(1 − cos πp)/2`` |
| ``warmup`` | ``start``, ``end``, a warm-up | ``start`` to ``end`` on a line over the warm-up, then ``end`` (DINO's teacher temperature: 0.04 → 0.07 over 30 epochs) |
| ``periodic_cosine`` | ``min``, ``max``, a period | ``min + (max − min)(1 + cos(2π s / P))/2``, from ``max`` at step 0 (Kukleva et al., ICLR 2023) |

A warm-up is ``warmup_epochs`` (a number, converted with ``E``) or ``warmup_steps`` (an int),
``W`` steps (at most ``T``); for ``linear`` and ``cosine`` the value goes on a line from
``warmup_start`` (default 0) at step 0 to ``start`` at step ``W``, for ``warmup`` from ``start``
to ``end``.  After it ``p = (s − W) / (T − 1 − W)`` runs from 0 to 1.  The period ``P`` of
``periodic_cosine`` is ``period_epochs`` (× ``E``) or ``period_steps``.  The periodic schedule is
Kukleva et al.'s "Temperature Schedules for self-supervised contrastive methods on long-tail
data" (ICLR 2023): ``τ(t) = τ⁻ + (τ⁺ − τ⁻)(1 + cos(2πt/T))/2`` with t in epochs; their runs use
τ⁻ = 0.1, τ⁺ = 1.0 and T = 400 epochs (their code steps τ once an epoch, ours every step).

A *learned* value is ``learned`` or ``{learned: true, init: 0.1, min: 0.01, max: 1.0}`` (the
defaults): a parameter of the component, log τ clamped to ``[log min, log max]`` as CLIP learns
its logit scale, trained by the run's optimiser at ``lr_scale`` (default 1) times the learning
rate of its param group (see
[`contrastive.components.learned`][contrastive.components.learned]).  Only arguments a component declares in
its ``learnable_args`` may be learned (``ntxent``'s ``temperature``).

Standard library only: the recipe validates schedules without torch.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from contrastive.errors import RecipeError, did_you_mean

SCHEDULE_KEY = "schedule"
LEARNED = "learned"
#: The kinds of schedule and the keys each one takes (the first group required, ``|``: one of).
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "constant": (("value",), ()),
    "linear": (("start", "end"), ("warmup_epochs", "warmup_steps", "warmup_start")),
    "cosine": (("start", "end"), ("warmup_epochs", "warmup_steps", "warmup_start")),
    "warmup": (("start", "end"), ("warmup_epochs", "warmup_steps")),
    "periodic_cosine": (("min", "max"), ("period_epochs", "period_steps")),
}
EXAMPLES = {
    "constant": "{schedule: constant, value: 0.5}",
    "linear": "{schedule: linear, start: 0.5, end: 0.1}",
    "cosine": "{schedule: cosine, start: 0.5, end: 0.1}",
    "warmup": "{schedule: warmup, start: 0.04, end: 0.07, warmup_epochs: 30}",
    "periodic_cosine": "{schedule: periodic_cosine, min: 0.1, max: 1.0, period_epochs: 400}",
}
LEARNED_EXAMPLE = "{learned: true, init: 0.1, min: 0.01, max: 1.0, lr_scale: 1.0}"


@dataclass(frozen=True)
class Duration:
    """A length of training given in epochs or in steps (exactly one of the two)."""

    epochs: float | None = None
    steps: int | None = None

    def in_steps(self, steps_per_epoch: int) -> float:
        """The duration in optimiser steps (epochs × ``steps_per_epoch``, not rounded)."""
        return self.steps if self.steps is not None else self.epochs * steps_per_epoch


@dataclass(frozen=True)
class Schedule:
    """A validated schedule (see the module docstring); [`at`][contrastive.schedules.Schedule.at] gives its value.

    ``start``/``end`` hold ``value`` for ``constant`` and ``max``/``min`` for ``periodic_cosine``;
    ``length`` is the warm-up (``linear``, ``cosine``, ``warmup``) or the period (``periodic_cosine``).
    """

    kind: str
    start: float
    end: float
    length: Duration | None = None
    warmup_start: float = 0.0

    def at(self, step: int, steps_per_epoch: int, total_steps: int) -> float:
        """The value at optimiser step ``step`` (0-based) of a run of ``total_steps`` steps,
        ``steps_per_epoch`` of them an epoch."""
        if self.kind == "constant":
            return self.start
        if self.kind == "periodic_cosine":
            period = self.length.in_steps(steps_per_epoch)
            return self.start - (self.start - self.end) * (1.0 - math.cos(2.0 * math.pi * step / period)) / 2.0
        warmup = self._warmup_steps(steps_per_epoch, total_steps)
        if self.kind == "warmup":
            return self.end if step >= warmup else self.start + (self.end - self.start) * step / warmup
        if step < warmup:
            return self.warmup_start + (self.start - self.warmup_start) * step / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - 1 - warmup))
        if progress == 1.0:  # exactly the end (start + (end - start) need not round to it)
            return self.end
        if self.kind == "linear":
            return self.start + (self.end - self.start) * progress
        return self.start + (self.end - self.start) * (1.0 - math.cos(math.pi * progress)) / 2.0  # exact at step 0

    def _warmup_steps(self, steps_per_epoch: int, total_steps: int) -> int:
        """Steps of the warm-up: the duration rounded, at least 1 when it is not 0, at most the run."""
        if not self.warms_up:
            return 0
        return min(max(1, round(self.length.in_steps(steps_per_epoch))), total_steps)

    @property
    def warms_up(self) -> bool:
        """Whether the schedule has a warm-up of more than 0 steps (``linear``, ``cosine``, ``warmup``)."""
        return self.kind != "periodic_cosine" and self.length is not None and self.length.in_steps(1) > 0

    @property
    def first(self) -> float:
        """The value at step 0 (what the component is built with), whatever the run's length."""
        if self.kind in ("linear", "cosine") and self.warms_up:
            return self.warmup_start
        if self.kind == "warmup" and not self.warms_up:
            return self.end
        return self.start

    @property
    def extremes(self) -> tuple[float, float]:
        """The smallest and the largest value the schedule can take."""
        values = [self.first, self.start, self.end] if self.kind != "warmup" or self.warms_up else [self.end]
        return min(values), max(values)

    def describe(self) -> str:
        """In a few words: ``cosine 0.5 → 0.1``, ``periodic_cosine 0.1 … 1.0, period 400 epochs``."""
        if self.kind == "constant":
            return f"constant {self.start:g}"
        if self.kind == "periodic_cosine":
            return f"periodic_cosine {self.end:g} … {self.start:g}, period {_length(self.length)}"
        text = f"{self.kind} {self.start:g} → {self.end:g}"
        if self.length is not None and self.kind == "warmup":
            return f"{text} over {_length(self.length)}"
        if self.length is not None:
            return f"{text} after {_length(self.length)} from {self.warmup_start:g}"
        return text


@dataclass(frozen=True)
class Learned:
    """A learned value: starts at ``init`` and stays within ``[min, max]`` (all > 0: it is kept as
    its log); its parameter trains at ``lr_scale`` × its param group's learning rate."""

    init: float = 0.1
    min: float = 0.01
    max: float = 1.0
    lr_scale: float = 1.0

    def describe(self) -> str:
        scale = f", lr × {self.lr_scale:g}" if self.lr_scale != 1.0 else ""
        return f"learned from {self.init:g} within [{self.min:g}, {self.max:g}]{scale}"


def _length(length: Duration) -> str:
    return f"{length.steps} steps" if length.steps is not None else f"{length.epochs:g} epochs"


def is_schedule(value: Any) -> bool:
    """Whether a recipe value is a schedule mapping (a mapping with a ``schedule`` key)."""
    return isinstance(value, dict) and SCHEDULE_KEY in value


def is_learned(value: Any) -> bool:
    """Whether a recipe value asks for a learned value (``learned`` or a mapping with a ``learned`` key)."""
    return value == LEARNED or (isinstance(value, dict) and LEARNED in value)


def _number(raw: dict, key: str, where: str, kind: str) -> float:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise RecipeError(f"{where}.{key} should be a finite number, got {value!r} (e.g. {EXAMPLES[kind]})")
    return float(value)


def _duration(raw: dict, where: str, kind: str, epochs_key: str, steps_key: str, *, required: bool) -> Duration | None:
    given = [k for k in (epochs_key, steps_key) if k in raw]
    if len(given) == 2:
        raise RecipeError(f"{where}: give {epochs_key} or {steps_key}, not both")
    if not given:
        if required:
            raise RecipeError(f"{where}: a {kind} schedule needs {epochs_key} or {steps_key}, e.g. {EXAMPLES[kind]}")
        return None
    key, value = given[0], raw[given[0]]
    positive = kind == "periodic_cosine"  # a period of 0 has no meaning; a warm-up of 0 is none
    if key == steps_key:
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if positive else 0):
            raise RecipeError(f"{where}.{key} should be an int {'>= 1' if positive else '>= 0'}, got {value!r}")
        return Duration(steps=value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or \
            not (value > 0 if positive else value >= 0):
        raise RecipeError(f"{where}.{key} should be a number {'> 0' if positive else '>= 0'}, got {value!r}")
    return Duration(epochs=float(value))


def parse_schedule(raw: Any, where: str) -> Schedule:
    """A recipe's schedule mapping as a [`Schedule`][contrastive.schedules.Schedule], or a one-line
    [`RecipeError`][contrastive.errors.RecipeError] naming ``where`` (the recipe key, e.g. ``loss.args.temperature``)."""
    kinds = ", ".join(KINDS)
    if not is_schedule(raw):
        raise RecipeError(f"{where} should be a number or a schedule {{schedule: KIND, ...}} (schedules: {kinds}), got {raw!r}")
    kind = raw[SCHEDULE_KEY]
    if kind not in KINDS:
        raise RecipeError(f"{where}: unknown schedule {kind!r}{did_you_mean(str(kind), KINDS)} (schedules: {kinds}; "
                          f"e.g. --{where} '{EXAMPLES['cosine']}')")
    required, optional = KINDS[kind]
    allowed = (SCHEDULE_KEY, *required, *optional)
    for key in raw:
        if key not in allowed:
            raise RecipeError(f"{where}: a {kind} schedule has no key {key!r}{did_you_mean(str(key), allowed)} "
                              f"(its keys: {', '.join(allowed[1:])}; e.g. {EXAMPLES[kind]})")
    missing = [key for key in required if key not in raw]
    if missing:
        raise RecipeError(f"{where}: a {kind} schedule needs {' and '.join(missing)}, e.g. --{where} '{EXAMPLES[kind]}'")
    values = [_number(raw, key, where, kind) for key in required]
    if kind == "constant":
        return Schedule(kind, values[0], values[0])
    if kind == "periodic_cosine":
        low, high = values
        if low > high:
            raise RecipeError(f"{where}: min ({low:g}) must not exceed max ({high:g}), e.g. {EXAMPLES[kind]}")
        return Schedule(kind, high, low, _duration(raw, where, kind, "period_epochs", "period_steps", required=True))
    length = _duration(raw, where, kind, "warmup_epochs", "warmup_steps", required=kind == "warmup")
    if "warmup_start" in raw and length is None:
        raise RecipeError(f"{where}: warmup_start needs warmup_epochs or warmup_steps (the warm-up it starts)")
    warmup_start = _number(raw, "warmup_start", where, kind) if "warmup_start" in raw else 0.0
    return Schedule(kind, values[0], values[1], length, warmup_start)


def parse_learned(raw: Any, where: str) -> Learned:
    """``learned`` or ``{learned: true, init, min, max, lr_scale}`` as a [`Learned`][contrastive.schedules.Learned], or a
    one-line [`RecipeError`][contrastive.errors.RecipeError] naming ``where``."""
    if raw == LEARNED:
        return Learned()
    if not isinstance(raw, dict) or raw.get(LEARNED) is not True:
        raise RecipeError(f"{where} should be a number, learned or {LEARNED_EXAMPLE}, got {raw!r}")
    allowed = (LEARNED, "init", "min", "max", "lr_scale")
    for key in raw:
        if key not in allowed:
            raise RecipeError(f"{where}: a learned value has no key {key!r}{did_you_mean(str(key), allowed)} "
                              f"(its keys: {', '.join(allowed[1:])}; e.g. {LEARNED_EXAMPLE})")
    values = {}
    for key in allowed[1:]:
        value = raw.get(key, getattr(Learned, key))
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
            why = "a factor of the learning rate" if key == "lr_scale" else "the value is learned as its log"
            raise RecipeError(f"{where}.{key} should be a number > 0 ({why}), got {value!r}")
        values[key] = float(value)
    if not values["min"] <= values["init"] <= values["max"]:
        raise RecipeError(f"{where}: needs min <= init <= max, got min {values['min']:g}, init {values['init']:g}, "
                          f"max {values['max']:g}")
    return Learned(**values)
