"""contrastive: plugin-based contrastive self-supervised learning (SimCLR first).

Public API (importing this package does not import torch)::

    import contrastive
    from contrastive import hookimpl, Method, Batch   # Method/Batch are resolved lazily (they import torch)
    regs = contrastive.load_registries()
    regs.losses.build("ntxent", temperature=0.5)
    regs.methods.names()                              # ['simclr', 'supcon', ...]
"""

from __future__ import annotations

import pluggy

from contrastive._version import __version__

hookimpl = pluggy.HookimplMarker("contrastive")
"""Marker for plugin hook implementations: ``@hookimpl def contrastive_register(registries)``."""


def load_registries(disable=(), autoload=None):
    """Return a fresh registries object: built-ins plus every installed plugin.

    See [`contrastive.plugins.load_registries`][contrastive.plugins.load_registries] for the arguments.
    """
    from contrastive.plugins import load_registries as _load

    return _load(disable=disable, autoload=autoload)


_LAZY = {"Method": "contrastive.methods.base", "Batch": "contrastive.methods.base", "load_backbone": "contrastive.tools.export"}


def __getattr__(name: str):
    """``contrastive.Method``, ``contrastive.Batch`` and ``contrastive.load_backbone`` import torch only when first used."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'contrastive' has no attribute {name!r}")


__all__ = ["Batch", "Method", "__version__", "hookimpl", "load_backbone", "load_registries"]
