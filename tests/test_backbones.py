"""Backbones: every timm model by name, CIFAR stems, local checkpoints, clear errors."""

from __future__ import annotations

import inspect

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

import contrastive
from contrastive.components import backbones
from contrastive.errors import DataError, InvalidArgumentsError, UnknownNameError
from contrastive.registry import Registries


@pytest.fixture(scope="module")
def regs():
    """Only this module's registrations (independent of the other built-in modules)."""
    registries = Registries()
    backbones.contrastive_register(registries)
    return registries


@pytest.fixture(scope="module")
def full_regs():
    try:
        return contrastive.load_registries(autoload=False)
    except ImportError as exc:  # another built-in module missing while the project is assembled
        if "backbones" in str(getattr(exc, "name", "") or exc):
            raise
        pytest.skip(f"full registries unavailable (another built-in module failed to import: {exc})")


def _images(batch=2, size=32, chans=3):
    torch.manual_seed(0)
    return torch.randn(batch, chans, size, size)


def test_resnet18_pooled_features(regs):
    model = regs.backbones.build("resnet18").eval()
    assert model.num_features == 512
    with torch.no_grad():
        assert model(_images(size=64)).shape == (2, 512)


def test_full_registry_has_timm_names(full_regs):
    assert "resnet50" in full_regs.backbones
    assert "convnext_tiny" in full_regs.backbones.names("convnext*")
    assert full_regs.backbones.build("resnet18").num_features == 512


def test_resolver_names_and_signature(regs):
    names = regs.backbones.names()
    assert {"resnet18", "resnet50", "resnet10t", "vit_small_patch16_224"} <= set(names)
    assert regs.backbones.explicit_names() == []
    factory = regs.backbones.get("resnet50")
    assert regs.backbones.get("resnet50") is factory  # cached
    params = inspect.signature(factory).parameters
    assert {"cifar_stem", "in_chans", "checkpoint_path"} <= set(params)
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert backbones.TimmBackbones().resolve("not_a_model") is None
    assert "resnet18" in regs.backbones.describe("resnet18")


def test_registry_checks_types_before_building(regs):
    with pytest.raises(InvalidArgumentsError, match="cifar_stem"):
        regs.backbones.check_args("resnet18", {"cifar_stem": "yes"})


def test_cifar_stem_keeps_4x4_map(regs):
    model = regs.backbones.build("resnet18", cifar_stem=True).eval()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.bias is None
    assert isinstance(model.maxpool, nn.Identity)
    with torch.no_grad():
        assert model.forward_features(_images()).shape[-2:] == (4, 4)
        assert model(_images()).shape == (2, 512)


def test_resnet10t_deep_stem(regs):
    model = regs.backbones.build("resnet10t").eval()
    with torch.no_grad():
        assert model(_images()).shape == (2, model.num_features)
    cifar = regs.backbones.build("resnet10t", cifar_stem=True).eval()
    assert cifar.conv1[0].stride == (1, 1) and isinstance(cifar.maxpool, nn.Identity)
    with torch.no_grad():
        assert cifar.forward_features(_images()).shape[-2:] == (4, 4)
    # A deep stem keeps its weights, so the state dict still fits the plain timm model.
    timm.create_model("resnet10t", num_classes=0).load_state_dict(cifar.state_dict())


def test_cifar_stem_on_non_resnet_warns_and_keeps_stem(regs):
    with pytest.warns(UserWarning, match=r"convnext_atto.*cifar_stem.*ResNet.*keeps its own stem"):
        model = regs.backbones.build("convnext_atto", cifar_stem=True)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, model.num_features)


def test_did_you_mean_from_timm_names(regs):
    with pytest.raises(UnknownNameError, match="resnet50"):
        regs.backbones.build("resnet5O")


def test_unknown_timm_kwarg(regs):
    with pytest.raises(InvalidArgumentsError, match=r"resnet18.*'not_an_arg'"):
        regs.backbones.build("resnet18", not_an_arg=1)


def test_timm_kwargs_pass_through(regs):
    model = regs.backbones.build("resnet18", drop_path_rate=0.1, in_chans=1)
    assert model.conv1.in_channels == 1


def test_pretrained_refused(regs):
    with pytest.raises(InvalidArgumentsError, match="checkpoint_path"):
        regs.backbones.build("resnet18", pretrained=True)
    with pytest.raises(InvalidArgumentsError, match="num_classes"):
        regs.backbones.build("resnet18", num_classes=10)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_checkpoint_round_trip(regs, tmp_path, suffix):
    torch.manual_seed(1)
    source = backbones.create_backbone("resnet10t", cifar_stem=True).eval()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(source.state_dict(), str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = regs.backbones.build("resnet10t", cifar_stem=True, checkpoint_path=str(path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(_images()), source(_images()))


def test_checkpoint_ignores_classifier_and_reports_mismatch(tmp_path):
    full = timm.create_model("resnet10t", num_classes=10)  # a supervised checkpoint with fc.*
    assert any(k.startswith("fc.") for k in full.state_dict())
    path = tmp_path / "sup.pth"
    torch.save({"model": full.state_dict()}, path)
    backbone = backbones.create_backbone("resnet10t", checkpoint_path=str(path))
    torch.testing.assert_close(backbone.conv1[0].weight, full.conv1[0].weight)

    with pytest.raises(InvalidArgumentsError, match=r"resnet14t.*missing key"):
        backbones.create_backbone("resnet14t", checkpoint_path=str(path))
    with pytest.raises(InvalidArgumentsError, match=r"wrong shape.*conv1\.0\.weight"):
        backbones.create_backbone("resnet10t", in_chans=1, checkpoint_path=str(path))


def test_checkpoint_missing_file(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(DataError, match="nope.safetensors"):
        backbones.create_backbone("resnet18", checkpoint_path=str(missing))


def test_state_dict_loads_into_plain_timm_model(regs):
    backbone = regs.backbones.build("resnet18")
    timm.create_model("resnet18", num_classes=0).load_state_dict(backbone.state_dict())


def test_small_non_resnets(regs):
    with torch.no_grad():
        vit = regs.backbones.build("vit_tiny_patch16_224", img_size=32).eval()
        assert vit(_images()).shape == (2, vit.num_features) == (2, 192)
        convnext = regs.backbones.build("convnext_atto").eval()
        assert convnext(_images()).shape == (2, convnext.num_features)
