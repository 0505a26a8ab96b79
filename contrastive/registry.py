"""Named registries of components: one generic [`Registry`][contrastive.registry.Registry], one instance per kind.

A registry maps explicit snake_case names to *factories* (classes or functions).  ``build``
checks the arguments against the factory's signature and simple type hints *before* calling
it, so a misspelt or mistyped recipe argument fails fast with a suggestion instead of deep
inside a constructor.  Registries may also hold *resolvers* — providers of a whole family of
names, such as every timm model — consulted after the explicit names.

This module imports no torch, nor do the plugin manager, the recipe package and the command line
(``contrastive --help`` imports none).  The registries' contents do: ``contrastive list`` and
``contrastive check`` load the registries, which imports the built-in component modules and with
them torch and Kornia (``check`` also imports timm, to check the backbone name).
"""

from __future__ import annotations

import contextlib
import fnmatch
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from contrastive import bounds
from contrastive.errors import (
    DuplicateNameError,
    InvalidArgumentsError,
    UnknownNameError,
    did_you_mean,
)
from contrastive.typecheck import matches, type_hints, type_name

if TYPE_CHECKING:
    from contrastive.plugins import PluginInfo

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class Resolver(Protocol):
    """A provider of many names at once (for example every timm model).

    ``names()`` lists what it provides; ``resolve(name)`` returns a factory or ``None``.
    A resolver may also define ``summary(name) -> str``, the one-line description that
    ``contrastive list`` prints beside each of its names (without it, names are listed bare).
    """

    def names(self) -> Iterable[str]: ...

    def resolve(self, name: str) -> Callable[..., Any] | None: ...


class Registry:
    """Name -> factory map for one kind of component.

    Args:
        kind: plural kind name, e.g. ``"losses"``; used in messages and ``contrastive list``.
        contract: one paragraph stating what every entry must satisfy (shown by ``list``).
        source_of_caller: callable returning the name of the plugin currently registering;
            the plugin manager supplies it so that duplicate errors name both plugins.
    """

    def __init__(
        self,
        kind: str,
        contract: str = "",
        source_of_caller: Callable[[], str | None] | None = None,
    ) -> None:
        self.kind = kind
        self.contract = contract
        self._entries: dict[str, Callable[..., Any]] = {}
        self._sources: dict[str, str] = {}
        self._resolvers: list[tuple[Resolver, str]] = []
        self._source_of_caller = source_of_caller or (lambda: None)

    # -- registration -------------------------------------------------------------------
    def register(self, name: str, obj: Callable[..., Any] | None = None, *, source: str | None = None):
        """Register ``obj`` under ``name``; without ``obj``, return a decorator.

        Re-registering the *same* object under its name is a no-op; a different object under a
        taken name raises [`DuplicateNameError`][contrastive.errors.DuplicateNameError] naming both sources.
        """
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise InvalidArgumentsError(
                f"cannot register {self._singular()} "
                f"name {name!r}: names are explicit snake_case strings such as 'my_loss'"
            )
        if obj is None:

            def decorator(target: Callable[..., Any]) -> Callable[..., Any]:
                self.register(name, target, source=source)
                return target

            return decorator
        if not callable(obj):
            raise InvalidArgumentsError(f"cannot register {name!r} in {self.kind}: {obj!r} is not callable")
        source = source or self._source_of_caller() or _module_of(obj)
        if name in self._entries:
            if self._entries[name] is obj:
                return obj
            raise DuplicateNameError(
                f"{self.kind} name '{name}' is registered twice: by {self._sources[name]} "
                f"({_qualname(self._entries[name])}) and by {source} ({_qualname(obj)}); "
                f"rename one of them, or disable a plugin with --disable-plugin NAME "
                f"(contrastive plugins lists them)"
            )
        self._entries[name] = obj
        self._sources[name] = source
        return obj

    def add_resolver(self, resolver: Resolver, *, source: str | None = None) -> None:
        """Add a provider of a family of names, consulted after explicit registrations."""
        self._resolvers.append((resolver, source or self._source_of_caller() or _module_of(resolver)))

    # -- lookup -------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._lookup(name) is not None

    def __len__(self) -> int:
        return len(self.names())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _lookup(self, name: str) -> tuple[Callable[..., Any], str] | None:
        if name in self._entries:
            return self._entries[name], self._sources[name]
        for resolver, source in self._resolvers:
            factory = resolver.resolve(name)
            if factory is not None:
                return factory, source
        return None

    def get(self, name: str) -> Callable[..., Any]:
        """Return the factory registered under ``name`` or raise [`UnknownNameError`][contrastive.errors.UnknownNameError]."""
        found = self._lookup(name)
        if found is None:
            raise UnknownNameError(self.unknown_message(name))
        return found[0]

    def unknown_message(self, name: str) -> str:
        hint = did_you_mean(str(name), self.names())
        return f"unknown {self._singular()} '{name}'{hint} (contrastive list {self.kind})"

    def source(self, name: str) -> str:
        """The plugin (or module) that registered ``name``."""
        found = self._lookup(name)
        if found is None:
            raise UnknownNameError(self.unknown_message(name))
        return found[1]

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching the shell wildcard ``pattern`` (``"resnet*"``)."""
        every = set(self._entries)
        for resolver, _ in self._resolvers:
            every.update(resolver.names())
        return sorted(n for n in every if fnmatch.fnmatchcase(n, pattern))

    def resolvers(self) -> list[Resolver]:
        """The name-family providers, in the order they are consulted."""
        return [resolver for resolver, _ in self._resolvers]

    def explicit_names(self) -> list[str]:
        """Names registered one by one (without resolver families)."""
        return sorted(self._entries)

    def summary(self, name: str) -> str:
        """One line about ``name`` for listings: for a name registered one by one, the first
        paragraph of its factory's docstring; for a resolver's name, the resolver's ``summary(name)``
        where it has one ("" otherwise, and when there is no docstring)."""
        if name not in self._entries:
            for resolver, _ in self._resolvers:
                if resolver.resolve(name) is not None:
                    summary = getattr(resolver, "summary", None)
                    return " ".join(summary(name).split()) if summary is not None else ""
            self.get(name)  # unknown: the usual error
        doc = (inspect.getdoc(self.get(name)) or "").strip()
        return " ".join(line.strip() for line in doc.split("\n\n")[0].splitlines())

    def describe(self, name: str) -> str:
        """``name(signature)`` followed by the first line of the factory's docstring."""
        factory = self.get(name)
        try:  # eval_str: show `dim: int`, not `dim: 'int'`, for modules with postponed annotations
            signature = inspect.signature(factory, eval_str=True)
        except NameError:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):
            signature = None
        signature = str(signature.replace(return_annotation=inspect.Signature.empty)) if signature else "(...)"
        doc = inspect.getdoc(factory) or ""
        first = doc.strip().splitlines()[0] if doc.strip() else ""
        return f"{name}{signature}" + (f" — {first}" if first else "")

    # -- construction -------------------------------------------------------------------
    def check_args(self, name: str, args: Mapping[str, Any] | None = None, *, injected: Iterable[str] = ()) -> None:
        """Validate ``args`` against the factory of ``name`` without building it.

        Unknown keywords get a did-you-mean, missing required ones are named, and values are
        checked against simple type hints (int, float, bool, str, Literal, Optional, sequences)
        and against the ranges the factory declares in an ``arg_bounds`` attribute, ``{argument:
        {"min": 1}, ...}`` (see [`contrastive.bounds`][contrastive.bounds]).
        ``injected`` names keywords that the caller supplies itself (e.g. a head's ``in_dim``).
        """
        factory = self.get(name)
        args = dict(args or {})
        try:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):
            return
        params = signature.parameters
        accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        keyword_params = {
            n: p
            for n, p in params.items()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
        where = f"{self._singular()} '{name}'"
        for key in args:
            if key not in keyword_params and not accepts_any:
                hint = did_you_mean(key, keyword_params)
                known = ", ".join(keyword_params) or "none"
                raise InvalidArgumentsError(
                    f"{where} has no argument '{key}'{hint} (its arguments: {known}; "
                    f"contrastive list {self.kind} --describe {name})"
                )
        provided = set(args) | set(injected)
        missing = [n for n, p in keyword_params.items() if p.default is inspect.Parameter.empty and n not in provided]
        if missing:
            raise InvalidArgumentsError(
                f"{where} needs argument(s) {', '.join(repr(m) for m in missing)} "
                f"(contrastive list {self.kind} --describe {name})"
            )
        hints = type_hints(factory)
        for key, value in args.items():
            if key in hints and not matches(value, hints[key]):
                raise InvalidArgumentsError(
                    f"{where}: argument '{key}' should be {type_name(hints[key])}, got {value!r} "
                    f"({type(value).__name__})"
                )
        arg_bounds = getattr(factory, "arg_bounds", None) or {}
        for key, value in args.items():
            found = bounds.problem(value, arg_bounds.get(key))
            if found:  # worded as check_arguments words it when the factory is called directly
                raise InvalidArgumentsError(f"{name}: {key} {found}")

    def build(self, name: str, /, **kwargs: Any) -> Any:
        """Check ``kwargs`` (see [`check_args`][contrastive.registry.Registry.check_args]) and call the factory of ``name``."""
        self.check_args(name, kwargs)
        return self.get(name)(**kwargs)

    def _singular(self) -> str:
        """``losses`` -> ``loss``, ``strategies`` -> ``strategy``, ``heads`` -> ``head``."""
        if self.kind.endswith("ies"):
            return self.kind[:-3] + "y"
        if self.kind.endswith("sses"):
            return self.kind[:-2]
        return self.kind[:-1] if self.kind.endswith("s") else self.kind

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} names, {len(self._resolvers)} resolvers)"


class Registries:
    """One [`Registry`][contrastive.registry.Registry] per component kind, as attributes.

    The standard kinds are created up front; [`kind`][contrastive.registry.Registries.kind] adds a new kind without changing the
    plugin hook (a plugin writes ``registries.kind("exporters", "contract").register(...)``).
    """

    STANDARD_KINDS: dict[str, str] = {
        "augmentations": "nn.Module; (B,C,H,W) float in [0,1] on any device -> same shape, "
        "fresh random parameters per sample.",
        "backbones": "nn.Module; (B,C,H,W) -> (B, num_features), with an int attribute num_features.",
        "heads": "nn.Module built with its args plus in_dim; (B, in_dim) -> (B, out_dim).",
        "losses": "nn.Module; (z_a, z_b), each (B, D), row i of each two views of sample i -> scalar; "
        "correct across processes (negatives from all of them).",
        "methods": "contrastive.Method (nn.Module) built with its args plus the backbone, head, loss and predictor "
        "its signature names; forward(views, batch) -> {name: tensor with the samples along dim 0}, pure; "
        "loss(outputs, batch) -> scalar or (scalar, {name: float}) over the whole step; after_step(outputs, batch, "
        "step, total_steps) once per applied optimiser step.",
        "datasets": "torch Dataset of fixed-size uint8 (C,H,W) images, with labels where the data has them.",
        "optimizers": "callable(named_parameters, batch_size=<global batch>, **args) -> torch.optim.Optimizer.",
        "schedulers": "callable(optimizer, steps_per_epoch=..., total_steps=..., **args) -> LR scheduler "
        "stepped every iteration.",
        "callbacks": "class built with its recipe args; any of on_fit_start(run), on_step_end(run, result), "
        "on_epoch_end(run), on_fit_end(run), on_preempted(run), teardown(run) with run a RunView, and "
        "state_dict() -> JSON / load_state_dict(state) carried in checkpoints; run after the built-in callbacks.",
        "protocols": "callable(train_x, train_y, test_x, test_y, *, num_classes, config, seed) -> {score_name: float} "
        "on frozen features (float32, CPU); attribute needs_labels (default True); named in eval.protocols.",
    }

    def __init__(self, plugins: Iterable[PluginInfo] = ()) -> None:
        self.plugins: list[PluginInfo] = list(plugins)  # the plugins that registered (built-ins included)
        self._current_source: str | None = None
        self._registries: dict[str, Registry] = {}
        for kind, contract in self.STANDARD_KINDS.items():
            self.kind(kind, contract)

    def kind(self, kind: str, contract: str = "") -> Registry:
        """Return the registry of ``kind``, creating it on first use."""
        if kind not in self._registries:
            if not NAME_PATTERN.match(kind):
                raise InvalidArgumentsError(f"registry kind {kind!r} must be a snake_case string")
            self._registries[kind] = Registry(kind, contract, source_of_caller=lambda: self._current_source)
        return self._registries[kind]

    def kinds(self) -> list[str]:
        return list(self._registries)

    def __getattr__(self, kind: str) -> Registry:
        registries = self.__dict__.get("_registries", {})
        if kind in registries:
            return registries[kind]
        raise AttributeError(f"no registry kind {kind!r}; kinds: {', '.join(registries)}")

    def __getitem__(self, kind: str) -> Registry:
        if kind not in self._registries:
            raise UnknownNameError(
                f"unknown component kind '{kind}'{did_you_mean(kind, self._registries)} "
                f"(kinds: {', '.join(self._registries)})"
            )
        return self._registries[kind]

    @contextlib.contextmanager
    def registering_as(self, source: str) -> Iterator[None]:
        """Attribute every registration made inside the block to ``source``."""
        previous, self._current_source = self._current_source, source
        try:
            yield
        finally:
            self._current_source = previous

    def __repr__(self) -> str:
        return "Registries(" + ", ".join(f"{k}={len(r.explicit_names())}" for k, r in self._registries.items()) + ")"


# -- helpers ---------------------------------------------------------------------------------
def _module_of(obj: object) -> str:
    return getattr(obj, "__module__", None) or type(obj).__module__


def _qualname(obj: object) -> str:
    return f"{_module_of(obj)}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"
