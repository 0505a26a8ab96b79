"""contrastive: plugin-based contrastive self-supervised learning (SimCLR first).

Public API (importing this package does not import torch)::

    import contrastive
    from contrastive import hookimpl
    regs = contrastive.load_registries()
    regs.losses.build("ntxent", temperature=0.5)
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("contrastive")
"""Marker for plugin hook implementations: ``@hookimpl def contrastive_register(registries)``."""


def load_registries(disable=(), autoload=None):
    """Return a fresh registries object: built-ins plus every installed plugin.

    See :func:`contrastive.plugins.load_registries` for the arguments.
    """
    from contrastive.plugins import load_registries as _load

    return _load(disable=disable, autoload=autoload)


__all__ = ["__version__", "hookimpl", "load_registries"]
