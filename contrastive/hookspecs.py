"""The one plugin hook of contrastive.

A plugin is an installed distribution with an entry point in the group ``contrastive`` that
points at a module implementing [`contrastive_register`][contrastive.hookspecs.contrastive_register].  The built-in parts register
through this same hook (``contrastive.components.*``); there is no second, private path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from contrastive.registry import Registries

hookspec = pluggy.HookspecMarker("contrastive")


@hookspec
def contrastive_register(registries: Registries) -> None:
    """Register components in ``registries``.

    ``registries`` has one [`contrastive.registry.Registry`][contrastive.registry.Registry] per kind, as attributes:
    ``augmentations``, ``backbones``, ``heads``, ``losses``, ``methods``, ``datasets``,
    ``optimizers``, ``schedulers``, ``callbacks`` (side concerns of fit, named in a recipe's
    ``callbacks:``; see docs/callbacks.md) and ``protocols`` (evaluations of frozen features,
    named in ``eval.protocols``; see docs/protocols.md).  A method (``registries.methods``) is a whole training
    method: a `contrastive.Method` subclass (see docs/methods.md).  Register with the call form ``registries.losses.register("name", Cls)``
    or the decorator form ``@registries.losses.register("name")``.  Names are explicit
    snake_case strings.  Registering a different object under a taken name raises
    [`contrastive.errors.DuplicateNameError`][contrastive.errors.DuplicateNameError] naming both plugins.
    """
