"""Optimizers and learning-rate schedulers.

Optimizer factories are called by the engine as
``factory(named_parameters, batch_size=<global batch size>, **recipe_args)`` where
``named_parameters`` is a list of ``(name, Parameter)`` pairs (trainable ones).  The learning
rate of the recipe is scaled with the global batch size ([`scaled_lr`][contrastive.components.optim.scaled_lr]), as in SimCLR
(Chen et al., 2020): ``lr = 0.3 × batch / 256`` (``linear``) or ``0.075 × sqrt(batch)``
(``sqrt``).  With ``exclude_bias_and_norm`` (default) biases and normalisation weights — every
parameter with ``ndim <= 1`` — get no weight decay (and, for LARS, no trust-ratio adaptation).
Each param group carries a ``"name"``: ``"decay"`` or ``"no_decay"``.

Scheduler factories are called as ``factory(optimizer, steps_per_epoch=..., total_steps=...,
**recipe_args)`` and return a `torch.optim.lr_scheduler.LambdaLR` that is stepped every
iteration; its multiplier is a small picklable object, so ``state_dict()`` /
``load_state_dict()`` resume it exactly.  The peak learning rate is each group's ``lr`` when the
scheduler is built.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from contrastive import hookimpl
from contrastive.errors import InvalidArgumentsError

if TYPE_CHECKING:
    from contrastive.registry import Registries

__all__ = [
    "ConstantWithWarmup",
    "WarmupCosine",
    "adamw",
    "constant",
    "lars",
    "param_groups",
    "scaled_lr",
    "sgd",
    "warmup_cosine",
]

LrScaling = Literal["linear", "sqrt", "none"]
_SCALING_RULES = ("linear", "sqrt", "none")


def scaled_lr(lr: float, batch_size: int, rule: str) -> float:
    """Scale a base learning rate with the global batch size.

    ``linear``: ``lr × batch_size / 256``; ``sqrt``: ``lr × sqrt(batch_size)``; ``none``: ``lr``.
    """
    if rule == "linear":
        return lr * batch_size / 256
    if rule == "sqrt":
        return lr * math.sqrt(batch_size)
    if rule == "none":
        return lr
    raise InvalidArgumentsError(f"lr_scaling should be one of {', '.join(map(repr, _SCALING_RULES))}, got {rule!r}")


def param_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    weight_decay: float,
    exclude_bias_and_norm: bool = True,
    **decay_options: Any,
) -> list[dict[str, Any]]:
    """Split parameters into a ``"decay"`` group and (optionally) a ``"no_decay"`` group.

    With ``exclude_bias_and_norm``, parameters with ``ndim <= 1`` (biases, norm weights) go to
    ``"no_decay"`` with ``weight_decay=0``; ``decay_options`` are set on the ``"decay"`` group
    only.  Empty groups are left out; frozen parameters and repeats of a shared one are skipped.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for _, param in named_parameters:
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (no_decay if exclude_bias_and_norm and param.ndim <= 1 else decay).append(param)
    groups = []
    if decay:
        groups.append({"name": "decay", "params": decay, "weight_decay": weight_decay, **decay_options})
    if no_decay:
        groups.append({"name": "no_decay", "params": no_decay, "weight_decay": 0.0})
    return groups


def _check(component: str, named_parameters: Any, batch_size: int, lr: float, weight_decay: float, lr_scaling: str):
    where = f"optimizer '{component}'"
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidArgumentsError(f"{where}: batch_size should be a positive int, got {batch_size!r}")
    if not lr > 0:
        raise InvalidArgumentsError(f"{where}: argument 'lr' should be > 0, got {lr!r}")
    if not weight_decay >= 0:
        raise InvalidArgumentsError(f"{where}: argument 'weight_decay' should be >= 0, got {weight_decay!r}")
    if lr_scaling not in _SCALING_RULES:
        raise InvalidArgumentsError(
            f"{where}: argument 'lr_scaling' should be one of {', '.join(map(repr, _SCALING_RULES))}, got {lr_scaling!r}"
        )
    named_parameters = list(named_parameters)
    if not named_parameters:
        raise InvalidArgumentsError(f"{where}: there are no trainable parameters to optimize")
    return named_parameters


def _check_momentum(component: str, momentum: float) -> None:
    if not 0 <= momentum < 1:
        raise InvalidArgumentsError(
            f"optimizer '{component}': argument 'momentum' should be in [0, 1), got {momentum!r}"
        )


def lars(
    named_parameters: list[tuple[str, nn.Parameter]],
    batch_size: int,
    lr: float = 0.3,
    lr_scaling: LrScaling = "linear",
    weight_decay: float = 1e-6,
    momentum: float = 0.9,
    trust_coefficient: float = 0.001,
    exclude_bias_and_norm: bool = True,
) -> torch.optim.Optimizer:
    """LARS (You et al., 2017), SimCLR's optimizer: SGD with momentum and a layer-wise trust ratio.

    Uses ``timm.optim.Lars``.  The ``"decay"`` group has weight decay and LARS adaptation
    (``always_adapt=True``, even with ``weight_decay=0``); with ``exclude_bias_and_norm`` the
    ``"no_decay"`` group (biases, norm weights) is plain momentum SGD: no weight decay and no
    adaptation, as in SimCLR and BYOL.  ``lr`` is scaled by ``lr_scaling`` with the global batch
    size (paper: 0.3 linear, or 0.075 sqrt).
    """
    from timm.optim import Lars

    named_parameters = _check("lars", named_parameters, batch_size, lr, weight_decay, lr_scaling)
    _check_momentum("lars", momentum)
    if not trust_coefficient > 0:
        raise InvalidArgumentsError(
            f"optimizer 'lars': argument 'trust_coefficient' should be > 0, got {trust_coefficient!r}"
        )
    groups = param_groups(named_parameters, weight_decay, exclude_bias_and_norm, always_adapt=True)
    for group in groups:
        group.setdefault("always_adapt", False)  # timm adapts only where weight_decay != 0 or always_adapt
    return Lars(
        groups,
        lr=scaled_lr(lr, batch_size, lr_scaling),
        momentum=momentum,
        weight_decay=weight_decay,
        trust_coeff=trust_coefficient,
    )


def sgd(
    named_parameters: list[tuple[str, nn.Parameter]],
    batch_size: int,
    lr: float = 0.1,
    lr_scaling: LrScaling = "linear",
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 5e-4,
    exclude_bias_and_norm: bool = True,
) -> torch.optim.Optimizer:
    """SGD with momentum (``torch.optim.SGD``); no weight decay on biases and norm weights by default."""
    named_parameters = _check("sgd", named_parameters, batch_size, lr, weight_decay, lr_scaling)
    _check_momentum("sgd", momentum)
    if nesterov and momentum == 0:
        raise InvalidArgumentsError("optimizer 'sgd': nesterov=True needs momentum > 0")
    return torch.optim.SGD(
        param_groups(named_parameters, weight_decay, exclude_bias_and_norm),
        lr=scaled_lr(lr, batch_size, lr_scaling),
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
    )


def adamw(
    named_parameters: list[tuple[str, nn.Parameter]],
    batch_size: int,
    lr: float = 1e-3,
    lr_scaling: LrScaling = "none",
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.05,
    exclude_bias_and_norm: bool = True,
) -> torch.optim.Optimizer:
    """AdamW (``torch.optim.AdamW``); no weight decay on biases and norm weights by default."""
    named_parameters = _check("adamw", named_parameters, batch_size, lr, weight_decay, lr_scaling)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise InvalidArgumentsError(
            f"optimizer 'adamw': argument 'betas' should be two floats in [0, 1), got {betas!r}"
        )
    return torch.optim.AdamW(
        param_groups(named_parameters, weight_decay, exclude_bias_and_norm),
        lr=scaled_lr(lr, batch_size, lr_scaling),
        betas=(float(betas[0]), float(betas[1])),
        weight_decay=weight_decay,
    )


# -- schedulers ------------------------------------------------------------------------------
def _warmup_steps(
    component: str, steps_per_epoch: int, total_steps: int, warmup_epochs: float, warmup_steps: int | None
) -> int:
    where = f"scheduler '{component}'"
    for key, value in (("steps_per_epoch", steps_per_epoch), ("total_steps", total_steps)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidArgumentsError(f"{where}: {key} should be a positive int, got {value!r}")
    if warmup_steps is not None:
        if not isinstance(warmup_steps, int) or isinstance(warmup_steps, bool) or warmup_steps < 0:
            raise InvalidArgumentsError(f"{where}: argument 'warmup_steps' should be an int >= 0, got {warmup_steps!r}")
        steps = warmup_steps
    else:
        if not warmup_epochs >= 0:
            raise InvalidArgumentsError(f"{where}: argument 'warmup_epochs' should be >= 0, got {warmup_epochs!r}")
        steps = round(warmup_epochs * steps_per_epoch)
    return min(steps, total_steps)


class WarmupCosine:
    """LR multiplier at iteration ``step``: linear warm-up, then cosine decay to ``min_lr_ratio``.

    Warm-up: ``(step + 1) / warmup_steps`` for ``step < warmup_steps`` (the last warm-up step is
    at the peak, 1.0).  Then ``min + (1 - min) × (1 + cos(π p)) / 2`` where ``p`` goes from 0 at
    the peak step to 1 at the last step, ``total_steps - 1``; later steps stay at the minimum.
    Plain attributes only, so `LambdaLR` saves and restores it in its ``state_dict``.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        peak_step = max(self.warmup_steps - 1, 0)
        progress = min(1.0, (step - peak_step) / max(1, self.total_steps - 1 - peak_step))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class ConstantWithWarmup:
    """LR multiplier: ``(step + 1) / warmup_steps`` during warm-up, then 1."""

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps = warmup_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return 1.0


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    total_steps: int,
    warmup_epochs: float = 10,
    warmup_steps: int | None = None,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warm-up to each group's lr, then cosine decay to ``min_lr_ratio × lr`` at the last step.

    Stepped every iteration.  Warm-up lasts ``round(warmup_epochs × steps_per_epoch)`` steps, or
    ``warmup_steps`` when given (at most ``total_steps``); the lr reaches its peak at the last
    warm-up step and ``min_lr_ratio × peak`` at step ``total_steps - 1``.
    """
    warmup = _warmup_steps("warmup_cosine", steps_per_epoch, total_steps, warmup_epochs, warmup_steps)
    if not 0 <= min_lr_ratio <= 1:
        raise InvalidArgumentsError(
            f"scheduler 'warmup_cosine': argument 'min_lr_ratio' should be in [0, 1], got {min_lr_ratio!r}"
        )
    return LambdaLR(optimizer, WarmupCosine(warmup, total_steps, float(min_lr_ratio)))


def constant(
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    total_steps: int,
    warmup_epochs: float = 0,
) -> LambdaLR:
    """Constant lr (each group's lr), after an optional linear warm-up of ``warmup_epochs``. Stepped every iteration."""
    warmup = _warmup_steps("constant", steps_per_epoch, total_steps, warmup_epochs, None)
    return LambdaLR(optimizer, ConstantWithWarmup(warmup))


@hookimpl
def contrastive_register(registries: Registries):
    registries.optimizers.register("lars", lars)
    registries.optimizers.register("sgd", sgd)
    registries.optimizers.register("adamw", adamw)
    registries.schedulers.register("warmup_cosine", warmup_cosine)
    registries.schedulers.register("constant", constant)
