"""Every 2-D Kornia augmentation by name, as every timm model is a backbone by name.

A [`KorniaAugmentations`][contrastive.components.augmentations.kornia.KorniaAugmentations] resolver gives the augmentations registry one name per class:
``kornia_`` + the class name in snake_case.  Classes of ``kornia.augmentation``
(``RandomRotation`` -> ``kornia_random_rotation``, ``RandomRGBShift`` -> ``kornia_random_rgb_shift``,
``RandomRotation90`` -> ``kornia_random_rotation90``) and the policies of
``kornia.augmentation.auto`` (``RandAugment`` -> ``kornia_rand_augment``,
``TrivialAugment`` -> ``kornia_trivial_augment``, ``AutoAugment`` -> ``kornia_auto_augment``).
The list is read from the installed Kornia at run time, so a newer Kornia adds names; what is
left out, and why, is [`excluded`][contrastive.components.augmentations.kornia.excluded] (3-D ops, mix-ups that need labels or other samples,
containers, base classes: `EXCLUDED` and three rules).

Each name builds a [`KorniaAugmentation`][contrastive.components.augmentations.kornia.KorniaAugmentation] (or [`KorniaPolicy`][contrastive.components.augmentations.kornia.KorniaPolicy]) that holds the Kornia
module and keeps the augmentation contract:

* ``(B, C, H, W)`` float in [0, 1] -> float in [0, 1] (the output is clamped: some ops, such as
  ``RandomGaussianNoise``, leave the range); same shape, except for the ops that set a size
  (`RESIZING`: crops and resizes, whose output is their ``size``);
* fresh random parameters per sample: ``same_on_batch=False`` and ``p_batch=1`` are fixed (not
  recipe arguments), so Kornia's ``p`` is a per-sample probability; Kornia's extra outputs
  (transform matrices, ``keepdim``) never reach the pipeline;
* C = 3 and C = 1: the few ops Kornia only runs on RGB (`RGB_ONLY`) see the grayscale
  image as three equal channels and return the luma of their result;
* parameters are drawn on the CPU from torch's global generator, wherever the images are (the
  module keeps Kornia's samplers on the CPU when the pipeline moves to a device), as the built-in
  ops draw them, so a seeded run resumes bit-exactly.  A few ops draw pixel noise where the
  images are (``RandomGaussianNoise``, ``RandomSaltAndPepperNoise``, plasma and elastic fields).

The constructor arguments are Kornia's own, read from its signature (so ``contrastive check``
suggests a misspelt one); Kornia's own defaults apply.  The policies run one sample at a time,
because Kornia draws their choice of operations once per call; they take a per-sample ``p``
(default 1).

Kornia is imported lazily, in the resolver and the factories, so that loading the registries
does not pay Kornia's import time.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import re
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from contrastive import hookimpl
from contrastive.errors import InvalidArgumentsError

if TYPE_CHECKING:
    from contrastive.registry import Registries

__all__ = [
    "EXCLUDED",
    "PREFIX",
    "RESIZING",
    "RGB_ONLY",
    "KorniaAugmentation",
    "KorniaAugmentations",
    "KorniaPolicy",
    "excluded",
    "kornia_classes",
    "snake_case",
]

#: Every resolved name starts with it: ``contrastive list augmentations 'kornia*'``.
PREFIX = "kornia_"

#: Classes of ``kornia.augmentation`` (and ``.auto``) left out by name, with the reason.
EXCLUDED: dict[str, str] = {
    "AugmentationSequential": "a container: list its augmentations in the recipe instead",
    "ImageSequential": "a container: list its augmentations in the recipe instead",
    "PatchSequential": "a container of per-patch augmentations",
    "VideoSequential": "a container for video clips (B, T, C, H, W)",
    "ManyToManyAugmentationDispather": "a container dispatching several inputs",
    "ManyToOneAugmentationDispather": "a container dispatching several inputs",
    "PolicySequential": "the container of one policy's sub-policy",
    "RandomMixUpV2": "a mix-up: blends pairs of samples and needs their labels",
    "RandomCutMixV2": "a mix-up: pastes regions between samples and needs their labels",
    "RandomMosaic": "a mix-up: builds each output from several samples of the batch",
    "PatchMix": "a mix-up: pastes a patch from another sample of the batch",
    "RandomTransplantation": "a mix-up: needs segmentation masks beside the images",
    "RandomDissolving": "needs a Stable Diffusion model (diffusers and downloaded weights)",
    "Normalize": "deterministic and leaves [0, 1]: use the built-in normalize",
    "Denormalize": "undoes a normalisation: not a view augmentation",
}

#: Mix classes that only rearrange each sample itself, kept although their base mixes samples.
WITHIN_SAMPLE_MIX = frozenset({"RandomJigsaw"})

#: Classes whose output has their own ``size`` (crops, resizes, padding): ``p`` must be 1 (Kornia
#: cannot stack applied and skipped samples of different sizes).  Checked by the tests: every
#: other resolved class keeps the image size.
RESIZING = frozenset(
    {"CenterCrop", "RandomCrop", "RandomResizedCrop", "Resize", "LongestMaxSize", "SmallestMaxSize", "PadTo"}
)

#: Classes Kornia runs on 3-channel images only; a grayscale batch is expanded to RGB for them
#: and their result converted back to one channel (ITU-R 601 luma).  Checked by the tests.
RGB_ONLY = frozenset(
    {"RandomHue", "RandomSaturation", "RandomJPEG", "RandomPlanckianJitter", "RandomRGBShift", "RandomSnow"}
)

#: Kornia constructor arguments the contract fixes (not recipe arguments).
FIXED = {"same_on_batch": False, "keepdim": False, "p_batch": 1.0}

_LUMA = (0.299, 0.587, 0.114)


def snake_case(class_name: str) -> str:
    """``RandomRGBShift`` -> ``random_rgb_shift``, ``RandomRotation90`` -> ``random_rotation90``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", class_name).lower()


def excluded(class_name: str, cls: type) -> str | None:
    """Why the Kornia class ``cls`` has no name, or ``None`` when it has one."""
    from kornia.augmentation._2d.mix.base import MixAugmentationBaseV2
    from kornia.augmentation._3d.base import AugmentationBase3D
    from kornia.augmentation.auto.base import PolicyAugmentBase
    from kornia.augmentation.base import _BasicAugmentationBase

    if class_name in EXCLUDED:
        return EXCLUDED[class_name]
    if not (issubclass(cls, (_BasicAugmentationBase, PolicyAugmentBase))):
        return "not an augmentation"
    if "Base" in class_name or cls is PolicyAugmentBase:
        return "a base class for writing augmentations"
    if issubclass(cls, AugmentationBase3D) or class_name.endswith("3D"):
        return "3-D: works on volumes (B, C, D, H, W)"
    if issubclass(cls, MixAugmentationBaseV2) and class_name not in WITHIN_SAMPLE_MIX:
        return "a mix-up: mixes samples of the batch"
    return None


def _exported_classes() -> dict[str, type]:
    import kornia.augmentation as K
    import kornia.augmentation.auto as KA

    found: dict[str, type] = {}
    for module in (K, KA):
        for class_name in getattr(module, "__all__", None) or dir(module):
            cls = getattr(module, class_name, None)
            if inspect.isclass(cls) and not class_name.startswith("_"):
                found[class_name] = cls
    return found


@functools.cache
def kornia_classes() -> dict[str, type]:
    """``{name: Kornia class}`` for every class that gets a name (see [`excluded`][contrastive.components.augmentations.kornia.excluded])."""
    return {
        PREFIX + snake_case(class_name): cls
        for class_name, cls in sorted(_exported_classes().items())
        if excluded(class_name, cls) is None
    }


def kornia_exclusions() -> dict[str, str]:
    """``{Kornia class name: reason}`` for every exported class left out."""
    return {n: r for n, c in sorted(_exported_classes().items()) if (r := excluded(n, c)) is not None}


def _is_policy(cls: type) -> bool:
    from kornia.augmentation.auto.base import PolicyAugmentBase

    return issubclass(cls, PolicyAugmentBase)


# -- the modules -------------------------------------------------------------------------------
@functools.cache
def _kornia_errors() -> tuple[type[BaseException], ...]:
    """What a Kornia op raises on arguments or images it cannot take (its own ``BaseError`` too)."""
    from kornia.core.exceptions import BaseError

    return (ValueError, RuntimeError, TypeError, AssertionError, BaseError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_images(where: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{where} expects a (B, C, H, W) float batch in [0, 1], got {got}")


def _keep_sampling_on_cpu(module: nn.Module) -> None:
    """Point every Kornia sampler inside ``module`` back at the CPU (``Module.to`` moves them)."""
    from kornia.augmentation.base import _BasicAugmentationBase

    for m in module.modules():
        if isinstance(m, _BasicAugmentationBase):
            m.set_rng_device_and_dtype(torch.device("cpu"), torch.get_default_dtype())


class _KorniaModule(nn.Module):
    """What [`KorniaAugmentation`][contrastive.components.augmentations.kornia.KorniaAugmentation] and [`KorniaPolicy`][contrastive.components.augmentations.kornia.KorniaPolicy] share: the wrapped Kornia module
    ``op``, its registry ``name``, grayscale handling, clamping and CPU sampling."""

    def __init__(self, op: nn.Module, name: str, rgb_only: bool = False) -> None:
        super().__init__()
        self.op = op
        self.name = name
        self.rgb_only = rgb_only
        _keep_sampling_on_cpu(self.op)

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        _keep_sampling_on_cpu(self.op)
        return out

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """Kornia's op on ``x`` (n, C, H, W), grayscale through RGB where it needs, clamped."""
        gray_via_rgb = self.rgb_only and x.shape[1] == 1
        y = self.op(x.expand(-1, 3, -1, -1).contiguous() if gray_via_rgb else x)
        if isinstance(y, (tuple, list)):  # a transform matrix or labels: never passed on
            y = y[0]
        if gray_via_rgb:
            luma = torch.tensor(_LUMA, device=y.device, dtype=y.dtype)
            y = torch.einsum("bchw,c->bhw", y, luma)[:, None]
        return y.clamp(0.0, 1.0)

    def _where(self, x: torch.Tensor) -> str:
        return f"augmentation '{self.name}' on {tuple(x.shape)} images"

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class KorniaAugmentation(_KorniaModule):
    """One Kornia augmentation under the augmentation contract (see the module docstring).

    ``forward(x)``: ``(B, C, H, W)`` float in [0, 1] -> ``(B, C, H, W)`` (or ``(B, C, *size)``
    for a `RESIZING` op) float in [0, 1]; per-sample parameters and ``p``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(self.name, x)
        if x.shape[0] == 0:
            return x.clone()
        try:
            return self._run(x)
        except torch.OutOfMemoryError:
            raise
        except _kornia_errors() as exc:
            raise InvalidArgumentsError(
                f"{self._where(x)}: Kornia's {type(self.op).__name__} failed: {_first_line(exc)} "
                f"(contrastive list augmentations --describe {self.name})"
            ) from exc


class KorniaPolicy(_KorniaModule):
    """A Kornia augmentation policy (RandAugment, TrivialAugment, AutoAugment), per sample.

    ``forward(x)``: ``(B, C, H, W)`` float in [0, 1] -> same shape, float in [0, 1].  Kornia
    draws a policy's choice of operations once per call, for the whole batch; here each sample
    chosen with probability ``p`` gets its own call, so its own operations (B small calls: slower
    than one batched op, see docs/augmentations.md).
    """

    def __init__(self, op: nn.Module, name: str, p: float = 1.0) -> None:
        super().__init__(op, name)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise InvalidArgumentsError(f"augmentation '{name}': p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(self.name, x)
        out = x.clamp(0.0, 1.0)
        if self.p >= 1.0:
            chosen = range(x.shape[0])
        else:
            chosen = (torch.rand(x.shape[0]) < self.p).nonzero().flatten().tolist()
        try:
            for i in chosen:
                out[i : i + 1] = self._run(x[i : i + 1])
        except torch.OutOfMemoryError:
            raise
        except _kornia_errors() as exc:
            raise InvalidArgumentsError(
                f"{self._where(x)}: Kornia's {type(self.op).__name__} failed: {_first_line(exc)}"
            ) from exc
        return out

    def extra_repr(self) -> str:
        return f"name={self.name!r}, p={self.p}"


# -- factories ---------------------------------------------------------------------------------
def _one_line(doc: str | None) -> str:
    first = (inspect.cleandoc(doc or "").split("\n\n")[0]).strip()
    return " ".join(first.split())


def _kornia_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable forward references: names are still checked
        return {}


def _accepted_origins(hint: Any) -> set[Any]:
    """The outer types a hint accepts: ``Union[int, Tuple[int, int]]`` -> ``{int, tuple}``."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        return set().union(*(_accepted_origins(arg) for arg in typing.get_args(hint)))
    return {origin or hint}


def _from_yaml(value: Any, hint: Any) -> Any:
    """A recipe value as Kornia's constructor wants it: a YAML list becomes a tuple where the hint
    takes tuples but no lists, and a number or list becomes a tensor where it takes tensors only."""
    if hint is None or not isinstance(value, (int, float, list, tuple)) or isinstance(value, bool):
        return value
    accepted = _accepted_origins(hint)
    if accepted == {torch.Tensor}:
        return torch.tensor(value, dtype=torch.get_default_dtype())
    if isinstance(value, list) and tuple in accepted and not accepted & {list, collections.abc.Sequence}:
        return tuple(value)
    return value


def _build(name: str, cls: type, kwargs: dict[str, Any]) -> nn.Module:
    class_name = cls.__name__
    where = f"augmentation '{name}'"
    policy = _is_policy(cls)
    p = kwargs.pop("p", 1.0) if policy else kwargs.get("p")
    if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0):
        raise InvalidArgumentsError(f"{where}: p must be in [0, 1], got {p!r}")  # Kornia takes any number
    if class_name in RESIZING and p is not None and p != 1:
        raise InvalidArgumentsError(
            f"{where}: p must be 1 for an op that sets the image size (a skipped sample would keep "
            f"another size); got p={p!r} — use the built-in random_resized_crop for a per-sample p"
        )
    params = inspect.signature(cls).parameters
    fixed = {k: v for k, v in FIXED.items() if k in params}
    hints = _kornia_hints(cls)
    kwargs = {key: _from_yaml(value, hints.get(key)) for key, value in kwargs.items()}
    try:
        op = cls(**kwargs, **fixed)
    except _kornia_errors() as exc:
        raise InvalidArgumentsError(
            f"{where}: Kornia's {class_name} refused the arguments {kwargs}: {_first_line(exc)} "
            f"(contrastive list augmentations --describe {name})"
        ) from exc
    for key, value in FIXED.items():  # classes that take them as attributes only
        if hasattr(op, key) and key != "keepdim":
            setattr(op, key, value)
    if policy:
        return KorniaPolicy(op, name, p=p)
    return KorniaAugmentation(op, name, rgb_only=class_name in RGB_ONLY)


def _make_factory(name: str, cls: type) -> Callable[..., nn.Module]:
    """A factory whose signature is the Kornia constructor's, keyword-only, without `FIXED`
    (a policy gains ``p``), so that ``Registry.check_args`` checks recipe arguments against it."""
    hints = _kornia_hints(cls)
    kept = []
    for param in inspect.signature(cls).parameters.values():
        if param.name in FIXED or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        kept.append(
            param.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(param.name, param.annotation))
        )
    if _is_policy(cls):
        kept.append(inspect.Parameter("p", inspect.Parameter.KEYWORD_ONLY, default=1.0, annotation=float))

    def factory(**kwargs: Any) -> nn.Module:
        return _build(name, cls, dict(kwargs))

    factory.__signature__ = inspect.Signature(kept)  # type: ignore[attr-defined]
    factory.__annotations__ = {p.name: p.annotation for p in kept if p.annotation is not inspect.Parameter.empty}
    factory.__name__ = name
    factory.__qualname__ = f"kornia[{cls.__name__}]"
    summary = _one_line(cls.__doc__) or cls.__name__
    fixed = ", ".join(f"{k}={v}" for k, v in FIXED.items() if k in inspect.signature(cls).parameters)
    factory.__doc__ = (
        f"Kornia's {cls.__name__}: {summary}\n\n"
        f"Kornia's own arguments and defaults{'; fixed: ' + fixed if fixed else ''}. Output clamped to [0, 1]."
    )
    return factory


class KorniaAugmentations:
    """Resolver providing every 2-D Kornia augmentation and policy as ``kornia_<snake_case>``."""

    description = "every 2-D Kornia augmentation: kornia_*"

    def __init__(self) -> None:
        self._factories: dict[str, Callable[..., nn.Module]] = {}

    def names(self) -> list[str]:
        return sorted(kornia_classes())

    def resolve(self, name: str) -> Callable[..., nn.Module] | None:
        if not isinstance(name, str) or not name.startswith(PREFIX) or name not in kornia_classes():
            return None
        if name not in self._factories:
            self._factories[name] = _make_factory(name, kornia_classes()[name])
        return self._factories[name]

    def summary(self, name: str) -> str:
        """Kornia's one-line description of the class behind ``name``."""
        cls = kornia_classes()[name]
        return f"{cls.__name__}: {_one_line(cls.__doc__)}"

    def __repr__(self) -> str:
        return "KorniaAugmentations()"


@hookimpl
def contrastive_register(registries: Registries):
    registries.augmentations.add_resolver(KorniaAugmentations())
