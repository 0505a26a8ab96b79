"""The plugin manager: built-in parts and installed plugins, registered through one hook.

Built-in component modules are registered first, exactly like third-party plugins, then every
entry point in the group ``contrastive`` (unless ``CONTRASTIVE_DISABLE_PLUGIN_AUTOLOAD=1``).
A plugin that fails to import or to register is reported with its distribution name and the
original error — never later as an "unknown name".
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import pluggy

from contrastive import hookspecs
from contrastive.errors import DuplicateNameError, PluginError
from contrastive.registry import Registries

PROJECT_NAME = "contrastive"  # pluggy's project name (the hook markers' name), not the distribution's
#: The distribution on PyPI (``pip install contrastive-ssl``); the import package, the command and
#: the entry-point group are ``contrastive``.
DISTRIBUTION_NAME = "contrastive-ssl"
ENTRY_POINT_GROUP = "contrastive"
AUTOLOAD_ENV = "CONTRASTIVE_DISABLE_PLUGIN_AUTOLOAD"
DISABLE_ENV = "CONTRASTIVE_DISABLE_PLUGINS"

BUILTIN_MODULES: tuple[str, ...] = (
    "contrastive.components.augmentations",
    "contrastive.components.augmentations.kornia",
    "contrastive.components.backbones",
    "contrastive.components.heads",
    "contrastive.components.losses",
    "contrastive.components.dcl",
    "contrastive.components.datasets",
    "contrastive.components.optim",
    "contrastive.components.callbacks",
    "contrastive.components.protocols",
    "contrastive.methods.simclr",
    "contrastive.methods.supcon",
    "contrastive.methods.moco",
    "contrastive.methods.moco_v3",
    "contrastive.methods.nnclr",
    "contrastive.methods.byol",
    "contrastive.methods.simsiam",
    "contrastive.methods.barlow_twins",
    "contrastive.methods.vicreg",
    "contrastive.methods.swav",
    "contrastive.methods.dino",
)
#: A built-in plugin is named ``builtin.`` + its module's last component, except a module that
#: moved: it keeps the name it had (``--disable-plugin``, ``CONTRASTIVE_DISABLE_PLUGINS``, run records).
_MOVED_BUILTIN_NAMES = {"contrastive.components.augmentations.kornia": "builtin.kornia_augmentations"}


@dataclass
class PluginInfo:
    """One registered plugin: where it came from and what it registered."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool
    registered: dict[str, list[str]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"plugin '{self.name}' (distribution {self.distribution} {self.version})"


def autoload_enabled() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def _env_disabled() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def _contrastive_version() -> str:
    from contrastive._version import __version__

    return __version__


def _discover(disable: set[str]) -> list[tuple[importlib.metadata.EntryPoint, str, str]]:
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        version = ep.dist.version if ep.dist is not None else "?"
        if ep.name in disable or dist in disable:
            continue
        found.append((ep, dist, version))
    return sorted(found, key=lambda item: item[0].name)


def load_registries(disable: Iterable[str] = (), autoload: bool | None = None) -> Registries:
    """Build a fresh [`Registries`][contrastive.registry.Registries] holding the built-ins and every installed plugin.

    Args:
        disable: entry-point or distribution names to skip (also ``CONTRASTIVE_DISABLE_PLUGINS``,
            comma separated).
        autoload: load entry-point plugins; default: unless ``CONTRASTIVE_DISABLE_PLUGIN_AUTOLOAD=1``.

    The result has an extra attribute ``plugins``: a list of [`PluginInfo`][contrastive.plugins.PluginInfo].
    """
    disabled = set(disable) | _env_disabled()
    if autoload is None:
        autoload = autoload_enabled()
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}

    version = _contrastive_version()
    for module_name in BUILTIN_MODULES:
        short = _MOVED_BUILTIN_NAMES.get(module_name, "builtin." + module_name.rsplit(".", 1)[-1])
        if short in disabled:
            continue
        module = importlib.import_module(module_name)
        pm.register(module, name=short)
        infos[short] = PluginInfo(short, module_name, DISTRIBUTION_NAME, version, builtin=True)

    if autoload:
        for ep, dist, dist_version in _discover(disabled):
            info = PluginInfo(ep.name, ep.value, dist, dist_version, builtin=False)
            try:
                module = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"{info.label} failed to import {ep.value}: {type(exc).__name__}: {exc} "
                    f"(fix or uninstall it, or skip it with --disable-plugin {ep.name} or "
                    f"{AUTOLOAD_ENV}=1)"
                ) from exc
            try:
                pm.register(module, name=ep.name)
            except (pluggy.PluginValidationError, ValueError) as exc:  # a bad hook signature; a module twice
                raise PluginError(f"{info.label}: {exc}") from exc
            infos[ep.name] = info
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin)
            label = infos[name].label if name in infos else name
            raise PluginError(f"{label} implements an unknown hook: {exc}") from exc

    registries = Registries(plugins=infos.values())  # each info's `registered` is filled in below
    implemented = set()
    # get_hookimpls() lists in registration order: built-ins first, then plugins by name.
    for impl in pm.hook.contrastive_register.get_hookimpls():
        info = infos[impl.plugin_name]
        implemented.add(impl.plugin_name)
        before = {kind: set(registries[kind].explicit_names()) for kind in registries.kinds()}
        resolvers_before = {kind: len(registries[kind].resolvers()) for kind in registries.kinds()}
        try:
            with registries.registering_as(info.label if not info.builtin else f"contrastive ({info.module})"):
                impl.function(registries=registries)
        except DuplicateNameError:
            raise
        except Exception as exc:
            raise PluginError(
                f"{info.label} failed while registering its parts: {type(exc).__name__}: {exc}"
            ) from exc
        for kind in registries.kinds():
            new = sorted(set(registries[kind].explicit_names()) - before.get(kind, set()))
            new += [
                f"<{getattr(r, 'description', type(r).__name__)}>"
                for r in registries[kind].resolvers()[resolvers_before.get(kind, 0) :]
            ]
            if new:
                info.registered[kind] = new
    for name, info in infos.items():
        if name not in implemented:
            raise PluginError(
                f"{info.label}: module {info.module} implements no contrastive_register hook "
                f"(decorate it with @contrastive.hookimpl)"
            )
    return registries
