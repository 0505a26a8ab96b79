"""Per-group learning rates a method asks for: split the optimizer's groups, pin the scheduler.

A method says, parameter by parameter, how its optimizer group should differ from the recipe's
optimizer (`contrastive.Method.param_group_options`):

* ``{"lr_scale": s}`` (s > 0): the parameter trains at ``s`` × its group's lr, under the same
  schedule — Barlow Twins' biases and BatchNorm parameters at 0.024 × the weights' lr;
* ``{"fixed_lr": True}``: the scheduler leaves the parameter's lr at its base value — SimSiam's
  predictor.

`split_param_groups` runs on the freshly built optimizer (no state yet): every group the
optimizer factory made (``decay``, ``no_decay``, ...) keeps the parameters without options, and
each distinct set of options gets a copy of the group's hyper-parameters with the options
applied, named ``"<group>+<options>"``.  The groups are the same on every run of the same recipe,
so checkpoints resume them.  `pin_fixed_groups` then sets the multiplier of every
``fixed_lr`` group of a `LambdaLR` to 1 (every built-in
scheduler is one); any other scheduler is refused with a one-line error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from contrastive.errors import RecipeError

_KNOWN = ("lr_scale", "fixed_lr")


class FixedMultiplier:
    """LR multiplier 1 at every step (a picklable object: LambdaLR's ``state_dict`` keeps it)."""

    def __call__(self, step: int) -> float:
        return 1.0


def _checked(options: dict, name: str) -> tuple[tuple[str, object], ...]:
    unknown = sorted(set(options) - set(_KNOWN))
    if unknown:
        raise RecipeError(f"param_group_options of '{name}' has unknown keys {unknown} (known: {', '.join(_KNOWN)})")
    scale = options.get("lr_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise RecipeError(f"param_group_options of '{name}': lr_scale must be a number > 0, got {scale!r}")
    key = []
    if float(scale) != 1.0:
        key.append(("lr_scale", float(scale)))
    if options.get("fixed_lr", False):
        key.append(("fixed_lr", True))
    return tuple(key)


def split_param_groups(optimizer: torch.optim.Optimizer, named_parameters: Iterable[tuple[str, nn.Parameter]],
                       options_of: Callable[[str, nn.Parameter], dict]) -> None:
    """Split ``optimizer``'s groups in place by ``options_of(name, parameter)`` (see the module
    docstring).  Nothing changes when every parameter's options are ``{}``."""
    keys = {id(p): _checked(dict(options_of(name, p) or {}), name) for name, p in named_parameters}
    if not any(keys.values()):
        return
    new_groups = []
    for group in optimizer.param_groups:
        by_key: dict[tuple, list[nn.Parameter]] = {}
        for p in group["params"]:
            by_key.setdefault(keys.get(id(p), ()), []).append(p)
        group["params"] = by_key.pop((), [])
        for key, params in by_key.items():
            options = dict(key)
            extra = {k: v for k, v in group.items() if k != "params"}
            extra["lr"] = group["lr"] * options.get("lr_scale", 1.0)
            if "initial_lr" in extra:
                extra["initial_lr"] = group["initial_lr"] * options.get("lr_scale", 1.0)
            extra["fixed_lr"] = bool(options.get("fixed_lr", False))
            label = ",".join(f"{k}={v}" for k, v in key)
            extra["name"] = f"{group.get('name', 'group')}+{label}"
            new_groups.append({"params": params, **extra})
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
    for group in new_groups:
        optimizer.add_param_group(group)


def pin_fixed_groups(scheduler: object, optimizer: torch.optim.Optimizer) -> None:
    """Keep every ``fixed_lr`` group of ``optimizer`` at its base lr under ``scheduler``."""
    fixed = [i for i, group in enumerate(optimizer.param_groups) if group.get("fixed_lr")]
    if not fixed:
        return
    inner = getattr(scheduler, "scheduler", scheduler)  # Accelerate wraps schedulers
    if not isinstance(inner, LambdaLR):
        raise RecipeError(
            f"the method keeps some learning rates fixed, which needs a LambdaLR scheduler (warmup_cosine, "
            f"constant); {type(inner).__name__} cannot (choose --scheduler.name warmup_cosine)"
        )
    for i in fixed:
        inner.lr_lambdas[i] = FixedMultiplier()
        optimizer.param_groups[i]["lr"] = inner.base_lrs[i]
    inner._last_lr = [group["lr"] for group in optimizer.param_groups]
