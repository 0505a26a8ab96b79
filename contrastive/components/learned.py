"""A positive scalar a component learns: [`LearnedScalar`][contrastive.components.learned.LearnedScalar] (a learned temperature).

The recipe asks for it with ``learned`` or ``{learned: true, init: 0.1, min: 0.01, max: 1.0}`` on
an argument the component declares in ``learnable_args`` ([`contrastive.schedules`][contrastive.schedules]).
The parameter is the value's log, as CLIP learns its logit scale (Radford et al., 2021,
arXiv:2103.00020): gradient steps act on the scale of τ, not on τ itself, and τ stays positive.
It is bounded as CLIP bounds it: after every optimiser step the training loop clamps the
parameter to ``[log min, log max]`` in place ([`clamp_`][contrastive.components.learned.LearnedScalar.clamp_]), so it
never drifts past a bound.  The forward pass also reads the clamped value (for a use outside the
loop), but passes the gradient straight through to the parameter: ``torch.clamp`` gives no
gradient at the bounds themselves, and a τ resting on a bound must still be able to move back.

It trains with the run's optimiser at ``lr_scale`` × its param group's learning rate (the loop
gives it a group of its own when ``lr_scale`` is not 1).  The parameter is 0-dimensional, so the
optimisers' no-decay rule (``exclude_bias_and_norm``,
every parameter with ``ndim <= 1``) gives it no weight decay: a decay would pull log τ to 0, τ to 1.
It is part of the component's ``state_dict``, so checkpoints hold it and a resumed run continues it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from contrastive.errors import InvalidArgumentsError, RecipeError
from contrastive.schedules import Learned, is_learned, parse_learned


class LearnedScalar(nn.Module):
    """``exp(clamp(log_value, log min, log max))``: a learned positive scalar (0-dim tensor); the
    gradient of the clamp passes straight through to ``log_value``.

    Args:
        label: what it is, in the component's words (``"temperature"``): the key it is logged under
            is ``learned/<component>.<label>`` (``learned/loss.temperature``).
        spec: its initial value and bounds.
    """

    def __init__(self, label: str, spec: Learned) -> None:
        super().__init__()
        self.label = label
        self.spec = spec
        self.log_value = nn.Parameter(torch.tensor(math.log(spec.init)))

    @property
    def bounds(self) -> tuple[float, float]:
        """``(log min, log max)``."""
        return math.log(self.spec.min), math.log(self.spec.max)

    def forward(self) -> torch.Tensor:
        low, high = self.bounds
        log_value = self.log_value + (self.log_value.clamp(low, high) - self.log_value).detach()  # straight through
        return log_value.exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Bring the parameter back within its bounds (the loop calls it after each optimiser step)."""
        self.log_value.clamp_(*self.bounds)

    def item(self) -> float:
        """The current value as a Python float (a device sync on a GPU)."""
        return float(self().detach())

    def extra_repr(self) -> str:
        return f"{self.label}: {self.spec.describe()}"


def learned_or_none(owner: str, label: str, value: Any) -> LearnedScalar | None:
    """The [`LearnedScalar`][contrastive.components.learned.LearnedScalar] an argument asks for (``learned`` or a mapping),
    None for a plain number; a bad mapping is an [`InvalidArgumentsError`][contrastive.errors.InvalidArgumentsError]
    naming ``owner`` (the component) and ``label`` (the argument)."""
    if not is_learned(value) and not isinstance(value, dict):
        return None
    try:
        return LearnedScalar(label, parse_learned(value, label))
    except RecipeError as exc:
        raise InvalidArgumentsError(f"{owner}: {exc}") from exc
