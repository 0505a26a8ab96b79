"""Backbones: every timm model, by its timm name, as a pooled-feature encoder.

No names are registered one by one: a [`TimmBackbones`][contrastive.components.backbones.TimmBackbones] resolver provides every name in
``timm.list_models()`` (``resnet18``, ``resnet50``, ``resnet10t``, ``convnext_tiny``,
``vit_small_patch16_224`` ...), so unknown names get did-you-mean suggestions from timm's own
list.  Each is built by [`create_backbone`][contrastive.components.backbones.create_backbone] with ``num_classes=0``: the module *is* the timm
model, its forward maps ``(B, C, H, W) -> (B, num_features)`` and ``backbone.state_dict()``
loads with plain ``load_state_dict`` into ``timm.create_model(name, num_classes=0)`` (see
``cifar_stem`` for the one exception).

Nothing is ever downloaded: ``pretrained=True`` is refused; pass ``checkpoint_path`` with local
weights instead.

timm is imported lazily, inside the resolver and the factory, so that loading the registries
(``contrastive list``, ``contrastive check``) does not pay timm's import time.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from contrastive import hookimpl
from contrastive.errors import DataError, InvalidArgumentsError, UnknownNameError, did_you_mean

if TYPE_CHECKING:
    from contrastive.registry import Registries

__all__ = ["TimmBackbones", "apply_cifar_stem", "create_backbone", "load_checkpoint"]

#: Prefixes of classifier parameters that a ``num_classes=0`` model does not have; checkpoint
#: keys under them are ignored when the model lacks them (e.g. a supervised ImageNet checkpoint).
CLASSIFIER_PREFIXES = ("fc.", "head.", "classifier.", "head_dist.", "last_linear.")

#: timm arguments the backbone contract fixes; passing them is an error.
_FIXED_KWARGS = {
    "num_classes": "backbones are always built with num_classes=0 (pooled features; the "
    "projection head is a separate component)",
    "features_only": "backbones return pooled features (B, num_features); features_only is not supported",
}


def create_backbone(
    model_name: str,
    *,
    cifar_stem: bool = False,
    in_chans: int = 3,
    checkpoint_path: str | None = None,
    **timm_kwargs: Any,
) -> nn.Module:
    """Build the timm model ``model_name`` with ``num_classes=0``: ``(B, C, H, W) -> (B, num_features)``.

    Args:
        model_name: a name from ``timm.list_models()``.
        cifar_stem: for timm ResNets only — a small-image stem (SimCLR's CIFAR setting): a 3×3
            stride-1 first convolution and no max-pool, so a 32×32 input keeps a 4×4 final map.
            A plain 7×7 stem is *replaced* by a fresh 3×3 convolution, so its ``conv1.weight``
            no longer fits ``timm.create_model(name, num_classes=0)`` (build the same backbone
            with ``cifar_stem=True`` to load it).  Deep stems (``resnet*d``, ``resnet10t`` ...,
            where ``conv1`` is a Sequential of 3×3 convolutions) keep their weights: only the
            first convolution's stride becomes 1, and the state dict stays loadable into the
            plain timm model.  ResNet-RS style stems (a strided convolution in place of the
            max-pool) get that convolution's stride set to 1 as well.
        in_chans: number of input channels, passed to timm.
        checkpoint_path: local weights (``.safetensors``, or a ``torch.save`` file read with
            ``weights_only=True``): a state dict, or a dict holding one under ``state_dict`` or
            ``model``.  A ``module.`` prefix is stripped and classifier weights (``fc.``,
            ``head.``, ``classifier.``) absent from the model are ignored; any other missing or
            unexpected key is an error.
        **timm_kwargs: passed to ``timm.create_model`` (``drop_path_rate``, ``img_size`` for
            vision transformers on non-224 inputs, ...).

    Returns:
        the timm model, with an int attribute ``num_features``.

    Raises:
        InvalidArgumentsError: an unknown timm argument, ``pretrained=True``, ``cifar_stem`` on a
            model that is not a timm ResNet, a checkpoint that does not fit.
        DataError: ``checkpoint_path`` does not exist or cannot be read.
    """
    import timm

    where = f"backbone '{model_name}'"
    if timm_kwargs.get("pretrained"):
        raise InvalidArgumentsError(
            f"{where}: pretrained=True is not supported — contrastive never downloads weights; "
            f"put the weights in a local file and pass checkpoint_path: /path/to/weights.safetensors"
        )
    timm_kwargs.pop("pretrained", None)
    for key, why in _FIXED_KWARGS.items():
        if key in timm_kwargs:
            raise InvalidArgumentsError(f"{where}: argument '{key}' is not allowed: {why}")
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise InvalidArgumentsError(f"{where}: argument 'in_chans' should be a positive int, got {in_chans!r}")
    if checkpoint_path is not None and not Path(checkpoint_path).is_file():
        # Checked before the (possibly slow) model construction.
        raise DataError(f"{where}: checkpoint_path '{checkpoint_path}' does not exist or is not a file")

    try:
        model = timm.create_model(model_name, pretrained=False, num_classes=0, in_chans=in_chans, **timm_kwargs)
    except TypeError as exc:
        raise InvalidArgumentsError(_describe_type_error(where, exc, timm_kwargs)) from exc
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            hint = did_you_mean(model_name, timm.list_models())
            raise UnknownNameError(f"unknown backbone '{model_name}'{hint} (contrastive list backbones)") from exc
        raise

    if cifar_stem:
        apply_cifar_stem(model, model_name)
    if checkpoint_path is not None:
        load_checkpoint(model, checkpoint_path, model_name)
    if not isinstance(getattr(model, "num_features", None), int):  # every timm model has it; be safe
        raise InvalidArgumentsError(f"{where}: the timm model has no int attribute num_features")
    return model


def _describe_type_error(where: str, exc: TypeError, timm_kwargs: Mapping[str, Any]) -> str:
    match = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
    if match:
        bad = match.group(1)
        return (
            f"{where}: timm model does not accept argument '{bad}' ({exc}); the backbone's own "
            f"arguments are cifar_stem, in_chans, checkpoint_path, and other arguments go to "
            f"timm.create_model — see the model's constructor in timm"
        )
    given = ", ".join(f"{k}={v!r}" for k, v in timm_kwargs.items()) or "none"
    return f"{where}: timm could not build the model with the given arguments ({given}): {exc}"


# -- CIFAR stem ------------------------------------------------------------------------------
def apply_cifar_stem(model: nn.Module, model_name: str = "") -> nn.Module:
    """Turn a timm ResNet's ImageNet stem into a CIFAR stem, in place (see [`create_backbone`][contrastive.components.backbones.create_backbone])."""
    from timm.models.resnet import ResNet

    where = f"backbone '{model_name or type(model).__name__}'"
    if not isinstance(model, ResNet):
        # Swapping a backbone by name must not require editing its arguments: keep the model's own
        # stem and say so, rather than failing a recipe written for a ResNet.
        warnings.warn(
            f"{where}: cifar_stem applies to timm ResNet-family models only (resnet18, resnet50, "
            f"resnet18d, resnet10t, seresnet50 ...); {type(model).__name__} keeps its own stem",
            stacklevel=2,
        )
        return model
    conv1 = model.conv1
    if isinstance(conv1, nn.Conv2d):
        model.conv1 = nn.Conv2d(
            conv1.in_channels,
            conv1.out_channels,
            kernel_size=3,
            stride=1,
            padding=1,
            bias=False,
            device=conv1.weight.device,
            dtype=conv1.weight.dtype,
        )
    elif isinstance(conv1, nn.Sequential) and isinstance(conv1[0], nn.Conv2d):
        conv1[0].stride = (1, 1)  # deep stem: keep the weights, drop the downsampling
    else:
        raise InvalidArgumentsError(f"{where}: cifar_stem does not know this stem ({type(conv1).__name__} conv1)")

    pool = model.maxpool
    has_state = any(True for _ in pool.state_dict())
    if not has_state:  # MaxPool2d, AvgPool2d, MaxPool+BlurPool: no weights, drop it
        model.maxpool = nn.Identity()
    elif isinstance(pool, nn.Sequential) and isinstance(pool[0], nn.Conv2d) and pool[0].stride == (2, 2):
        pool[0].stride = (1, 1)  # ResNet-RS: a strided convolution replaces the max-pool
    else:
        raise InvalidArgumentsError(
            f"{where}: cifar_stem cannot remove this stem pooling ({pool.__class__.__name__} with weights); "
            f"drop cifar_stem or choose another ResNet"
        )
    return model


# -- checkpoints -----------------------------------------------------------------------------
def load_checkpoint(model: nn.Module, checkpoint_path: str | Path, model_name: str = "") -> nn.Module:
    """Load local weights into ``model`` (see ``checkpoint_path`` in [`create_backbone`][contrastive.components.backbones.create_backbone])."""
    where = f"backbone '{model_name or type(model).__name__}'"
    path = Path(checkpoint_path)
    if not path.is_file():
        raise DataError(f"{where}: checkpoint_path '{path}' does not exist or is not a file")
    # The one safe loader: safetensors, or torch.load(weights_only=True); a pickle that would
    # run code is refused (UnsafeFileError, a DataError) before anything is executed.
    from contrastive.storage.safeload import read_state_dict

    state = read_state_dict(path, what=f"{where}: checkpoint_path")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(CLASSIFIER_PREFIXES)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise InvalidArgumentsError(
            f"{where}: checkpoint_path '{path}' does not fit the model: "
            f"{len(missing)} missing key(s){_some(missing)}, {len(unexpected)} unexpected key(s){_some(unexpected)} "
            f"(was it saved from the same model with the same cifar_stem / in_chans?)"
        )
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if torch.is_tensor(v) and v.shape != own[k].shape
    ]
    if mismatched:
        raise InvalidArgumentsError(
            f"{where}: checkpoint_path '{path}' has tensors of the wrong shape: {'; '.join(mismatched[:5])}"
            + (f" (and {len(mismatched) - 5} more)" if len(mismatched) > 5 else "")
        )
    model.load_state_dict(state, strict=True)
    return model


def _some(keys: list[str], n: int = 5) -> str:
    if not keys:
        return ""
    return " (" + ", ".join(keys[:n]) + (", ..." if len(keys) > n else "") + ")"


# -- resolver --------------------------------------------------------------------------------
def _make_factory(model_name: str) -> Callable[..., nn.Module]:
    def factory(
        *,
        cifar_stem: bool = False,
        in_chans: int = 3,
        checkpoint_path: str | None = None,
        **timm_kwargs: Any,
    ) -> nn.Module:
        return create_backbone(
            model_name,
            cifar_stem=cifar_stem,
            in_chans=in_chans,
            checkpoint_path=checkpoint_path,
            **timm_kwargs,
        )

    factory.__name__ = model_name
    factory.__qualname__ = f"create_backbone[{model_name}]"
    factory.__doc__ = (
        f"timm model '{model_name}' with num_classes=0: (B, C, H, W) -> (B, num_features); "
        f"other arguments go to timm.create_model.\n\n" + (create_backbone.__doc__ or "").split("\n", 1)[-1]
    )
    return factory


class TimmBackbones:
    """Resolver providing every timm model name (``timm.list_models()``) as a backbone."""

    description = "every timm model"

    def __init__(self) -> None:
        self._factories: dict[str, Callable[..., nn.Module]] = {}

    @functools.cached_property
    def _names(self) -> frozenset[str]:
        import timm

        return frozenset(timm.list_models())

    def names(self) -> list[str]:
        return sorted(self._names)

    def resolve(self, name: str) -> Callable[..., nn.Module] | None:
        if not isinstance(name, str) or name not in self._names:
            return None
        if name not in self._factories:
            self._factories[name] = _make_factory(name)
        return self._factories[name]

    def __repr__(self) -> str:
        return "TimmBackbones()"


@hookimpl
def contrastive_register(registries: Registries):
    registries.backbones.add_resolver(TimmBackbones())
