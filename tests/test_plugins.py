"""The plugin mechanism end to end: fake installed distributions on sys.path, no pip.

Each test writes a package plus a ``*.dist-info`` folder (METADATA and entry_points.txt with the
group ``[contrastive]``) into ``tmp_path`` and puts ``tmp_path`` on ``sys.path``; that is all
``importlib.metadata`` needs to see an installed distribution, so ``load_registries`` goes
through its real discovery, import and registration path.
"""

from __future__ import annotations

import importlib
import sys

import pytest

import contrastive
import contrastive.plugins
from contrastive import hookimpl
from contrastive.errors import DuplicateNameError, InvalidArgumentsError, PluginError, UnknownNameError
from contrastive.registry import Registries, Registry
from tests.helpers import write_distribution

ACME = """
    from torch import nn

    from contrastive import hookimpl


    class AcmeLoss(nn.Module):
        \"\"\"Squared distance between the two views.\"\"\"

        def __init__(self, scale: float = 1.0) -> None:
            super().__init__()
            self.scale = scale

        def forward(self, z_a, z_b):
            return self.scale * (z_a - z_b).pow(2).mean()


    @hookimpl
    def contrastive_register(registries):
        registries.losses.register("acme_loss", AcmeLoss)

        @registries.augmentations.register("acme_aug")
        class AcmeAug(nn.Module):
            def forward(self, images):
                return images

        @registries.backbones.register("acme_net")
        def acme_net(num_features: int = 8):
            return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_features))
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    monkeypatch.delenv(contrastive.plugins.AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv(contrastive.plugins.DISABLE_ENV, raising=False)


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(source, ...)`` fakes an installed distribution whose plugin module is ``source``."""
    packages = []
    monkeypatch.syspath_prepend(tmp_path)

    def install_(source, *, dist="acme-plugin", version="0.1.0", entry_point="acme", package="acme_plugin"):
        write_distribution(tmp_path, source, dist=dist, package=package, entry_point=entry_point, version=version)
        packages.append(package)
        importlib.invalidate_caches()  # path and metadata finders cache directory listings

    yield install_
    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            del sys.modules[name]


# -- discovery ------------------------------------------------------------------------------
def test_installed_plugin_is_discovered(install):
    install(ACME)
    registries = contrastive.load_registries()
    assert "acme_loss" in registries.losses.names()
    assert "acme_aug" in registries.augmentations.names()
    assert "acme_net" in registries.backbones.names()
    assert registries.losses.source("acme_loss") == "plugin 'acme' (distribution acme-plugin 0.1.0)"
    assert registries.losses.source("ntxent").startswith("contrastive")
    info = next(p for p in registries.plugins if p.name == "acme")
    assert (info.distribution, info.version, info.builtin) == ("acme-plugin", "0.1.0", False)
    assert info.registered == {"augmentations": ["acme_aug"], "backbones": ["acme_net"], "losses": ["acme_loss"]}
    assert registries.losses.build("acme_loss", scale=2.0).scale == 2.0


def test_builtins_register_through_the_same_hook():
    registries = contrastive.load_registries(autoload=False)
    builtins = [p for p in registries.plugins if p.builtin]
    assert [p.module for p in builtins] == list(contrastive.plugins.BUILTIN_MODULES)
    assert any("ntxent" in p.registered.get("losses", []) for p in builtins)


def test_each_call_returns_a_fresh_object(install):
    install(ACME)
    first, second = contrastive.load_registries(), contrastive.load_registries()
    assert first is not second and first.losses is not second.losses
    first.losses.register("only_in_first", lambda: None)
    assert "only_in_first" not in second.losses
    assert second.losses.get("acme_loss") is first.losses.get("acme_loss")  # same class, registered twice


def test_plugin_may_add_a_new_kind(install):
    install(
        """
        from contrastive import hookimpl

        @hookimpl
        def contrastive_register(registries):
            registries.kind("exporters", "callable(run_dir) -> None").register("acme_export", print)
            registries.callbacks.register("acme_cb", print)
        """
    )
    registries = contrastive.load_registries()
    assert registries.exporters.names() == ["acme_export"]
    assert registries["exporters"].contract == "callable(run_dir) -> None"
    assert "acme_cb" in registries.callbacks.names()  # a standard kind the loop reads (tests/training/test_callbacks.py)


# -- failures are reported with the distribution and the original error ---------------------
def test_plugin_failing_on_import_names_distribution_and_cause(install):
    install("import acme_missing_dependency\n")
    with pytest.raises(PluginError) as excinfo:
        contrastive.load_registries()
    message = str(excinfo.value)
    assert "acme-plugin 0.1.0" in message
    assert "ModuleNotFoundError" in message and "acme_missing_dependency" in message
    assert "--disable-plugin acme" in message
    assert isinstance(excinfo.value.__cause__, ModuleNotFoundError)


def test_plugin_failing_while_registering(install):
    install(
        """
        from contrastive import hookimpl

        @hookimpl
        def contrastive_register(registries):
            registries.losses.register("AcmeLoss", print)
        """
    )
    with pytest.raises(PluginError, match=r"plugin 'acme' \(distribution acme-plugin 0.1.0\).*snake_case"):
        contrastive.load_registries()


def test_taken_name_names_both_sources(install):
    install(
        """
        from contrastive import hookimpl

        @hookimpl
        def contrastive_register(registries):
            registries.losses.register("ntxent", print)
        """
    )
    with pytest.raises(DuplicateNameError) as excinfo:
        contrastive.load_registries()
    message = str(excinfo.value)
    assert "'ntxent'" in message
    assert "contrastive (contrastive.components.losses)" in message
    assert "plugin 'acme' (distribution acme-plugin 0.1.0)" in message
    assert "--disable-plugin" in message


def test_two_plugins_with_one_name(install):
    source = """
        from contrastive import hookimpl

        @hookimpl
        def contrastive_register(registries):
            registries.losses.register("shared_loss", lambda: {name!r})
        """
    install(source.format(name="a"), dist="alpha-plugin", entry_point="alpha", package="alpha_plugin")
    install(source.format(name="b"), dist="beta-plugin", entry_point="beta", package="beta_plugin")
    with pytest.raises(DuplicateNameError, match="alpha-plugin.*beta-plugin"):
        contrastive.load_registries()
    assert "shared_loss" in contrastive.load_registries(disable=["beta"]).losses


def test_module_without_hookimpl(install):
    install("def contrastive_register(registries):  # not decorated\n    pass\n")
    with pytest.raises(PluginError, match=r"acme-plugin.*implements no contrastive_register hook.*@contrastive\.hookimpl"):
        contrastive.load_registries()


def test_misspelt_hook(install):
    install("from contrastive import hookimpl\n\n@hookimpl\ndef contrastive_regster(registries):\n    pass\n")
    with pytest.raises(PluginError, match=r"acme-plugin.*unknown hook"):
        contrastive.load_registries()


def test_hook_with_wrong_argument_name(install):
    install("from contrastive import hookimpl\n\n@hookimpl\ndef contrastive_register(regs):\n    pass\n")
    with pytest.raises(PluginError, match=r"(?s)acme-plugin.*contrastive_register\(regs\)"):
        contrastive.load_registries()


# -- switching plugins off -------------------------------------------------------------------
def test_autoload_switch_skips_plugins(install, monkeypatch):
    install("raise RuntimeError('must not be imported')\n")
    monkeypatch.setenv("CONTRASTIVE_DISABLE_PLUGIN_AUTOLOAD", "1")
    registries = contrastive.load_registries()
    assert "ntxent" in registries.losses
    assert all(p.builtin for p in registries.plugins)
    with pytest.raises(PluginError):
        contrastive.load_registries(autoload=True)  # the argument wins over the environment


@pytest.mark.parametrize("name", ["acme", "acme-plugin"])
def test_disable_by_entry_point_or_distribution(install, name):
    install("raise RuntimeError('must not be imported')\n")
    registries = contrastive.load_registries(disable=[name])
    assert not any(p.name == "acme" for p in registries.plugins)


def test_disable_through_environment(install, monkeypatch):
    install("raise RuntimeError('must not be imported')\n")
    monkeypatch.setenv("CONTRASTIVE_DISABLE_PLUGINS", "other, acme")
    assert not any(p.name == "acme" for p in contrastive.load_registries().plugins)


# -- the registry itself -------------------------------------------------------------------
class Cosine:
    """A factory with typed, defaulted and required arguments."""

    def __init__(self, dim: int, temperature: float = 0.5, mode: str = "sum") -> None:
        self.dim, self.temperature, self.mode = dim, temperature, mode


def test_call_and_decorator_forms():
    registry = Registry("losses")
    assert registry.register("cosine", Cosine) is Cosine

    @registry.register("dot")
    def dot(scale: float = 1.0):
        """Dot product."""
        return scale

    assert dot(2.0) == 2.0  # the decorator returns the function unchanged
    assert registry.names() == ["cosine", "dot"]
    assert registry.register("cosine", Cosine) is Cosine  # the same object again: a no-op
    with pytest.raises(DuplicateNameError, match="'cosine' is registered twice"):
        registry.register("cosine", dot)


@pytest.mark.parametrize("name", ["Cosine", "my-loss", "2loss", "", None])
def test_names_are_explicit_snake_case(name):
    with pytest.raises(InvalidArgumentsError, match="snake_case"):
        Registry("losses").register(name, Cosine)


def test_only_callables_register():
    with pytest.raises(InvalidArgumentsError, match="not callable"):
        Registry("losses").register("cosine", 42)


def test_names_with_wildcards_include_resolvers():
    class Family:
        def names(self):
            return ["resnet18", "resnet50", "vit_small"]

        def resolve(self, name):
            return Cosine if name in self.names() else None

    registry = Registry("backbones")
    registry.register("resmlp_tiny", Cosine)
    registry.add_resolver(Family(), source="timm")
    assert registry.names("res*") == ["resmlp_tiny", "resnet18", "resnet50"]
    assert registry.names("*net*") == ["resnet18", "resnet50"]
    assert "vit_small" in registry and registry.source("vit_small") == "timm"
    assert registry.explicit_names() == ["resmlp_tiny"]


def test_summaries_of_resolver_names_come_from_the_resolver():
    class Family:
        def names(self):
            return ["kornia_blur"]

        def resolve(self, name):
            return Cosine if name in self.names() else None

    class Described(Family):
        def names(self):
            return ["kornia_flip"]

        def summary(self, name):
            return "RandomFlip: flips\n  images."

    registry = Registry("augmentations")
    registry.register("cosine", Cosine)
    registry.add_resolver(Family())
    registry.add_resolver(Described())
    assert registry.summary("kornia_blur") == ""  # no summary(): listed bare, as timm names are
    assert registry.summary("kornia_flip") == "RandomFlip: flips images."
    assert registry.summary("cosine") == "A factory with typed, defaulted and required arguments."
    with pytest.raises(UnknownNameError):
        registry.summary("kornia_nope")


def test_describe():
    registry = Registry("losses")
    registry.register("cosine", Cosine)
    assert registry.describe("cosine") == (
        "cosine(dim: int, temperature: float = 0.5, mode: str = 'sum') — A factory with typed, defaulted and required arguments."
    )


def test_unknown_name_suggests_and_points_to_list(registries):
    with pytest.raises(UnknownNameError) as excinfo:
        registries.losses.get("ntxnet")
    assert str(excinfo.value) == "unknown loss 'ntxnet' — did you mean 'ntxent'? (contrastive list losses)"
    with pytest.raises(UnknownNameError, match=r"unknown loss 'zzz' \(contrastive list losses\)"):
        registries.losses.build("zzz")


def test_build_checks_arguments(registries):
    assert registries.losses.build("ntxent", temperature=0.2).temperature == 0.2
    with pytest.raises(InvalidArgumentsError, match="has no argument 'temprature' — did you mean 'temperature'"):
        registries.losses.build("ntxent", temprature=0.2)
    with pytest.raises(InvalidArgumentsError, match="argument 'temperature' should be float, 'learned' or dict, got 'hot'"):
        registries.losses.build("ntxent", temperature="hot")


def test_missing_and_mistyped_arguments():
    registry = Registry("losses")
    registry.register("cosine", Cosine)
    with pytest.raises(InvalidArgumentsError, match="needs argument\\(s\\) 'dim'"):
        registry.build("cosine")
    with pytest.raises(InvalidArgumentsError, match="'dim' should be int"):
        registry.build("cosine", dim=2.5)
    registry.check_args("cosine", {}, injected=["dim"])  # e.g. a head's in_dim, supplied by the caller
    assert registry.build("cosine", dim=3, temperature=1).temperature == 1  # an int is a fine float


def test_registries_kinds():
    registries = Registries()
    assert registries.kinds() == list(Registries.STANDARD_KINDS)
    assert set(Registries.STANDARD_KINDS) == {
        *("augmentations", "backbones", "heads", "losses", "methods", "datasets", "optimizers", "schedulers",
          "callbacks", "protocols")
    }
    exporters = registries.kind("exporters")
    assert registries.kind("exporters") is exporters and registries.exporters is exporters
    with pytest.raises(UnknownNameError, match="did you mean 'losses'"):
        registries["losess"]
    with pytest.raises(AttributeError, match="no registry kind 'losess'"):
        registries.losess  # noqa: B018


def test_registering_as_attributes_sources():
    registries = Registries()
    with registries.registering_as("plugin 'x'"):
        registries.heads.register("mine", Cosine)
    registries.heads.register("theirs", Cosine)
    assert registries.heads.source("mine") == "plugin 'x'"
    assert registries.heads.source("theirs") == __name__  # outside a plugin: the factory's module


def test_hookimpl_is_the_pluggy_marker():
    @hookimpl
    def contrastive_register(registries):
        pass

    assert hasattr(contrastive_register, "contrastive_impl")


# -- an outside package used by name in a recipe, end to end --------------------------------
OUTSIDE = """
    import torch
    from torch import nn

    from contrastive import hookimpl


    class TinyNet(nn.Module):
        \"\"\"(B, C, H, W) -> (B, 16): mean-pooled 3x3 conv features.\"\"\"

        def __init__(self, width: int = 16) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, width, 3, padding=1)
            self.num_features = width

        def forward(self, x):
            return self.conv(x).relu().mean(dim=(2, 3))


    class Invert(nn.Module):
        def __init__(self, p: float = 0.5) -> None:
            super().__init__()
            self.p = p

        def forward(self, x):
            keep = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.p).to(x.dtype)
            return keep * x + (1 - keep) * (1 - x)


    class AlignLoss(nn.Module):
        def forward(self, z_a, z_b):
            return 1 - nn.functional.cosine_similarity(z_a, z_b).mean()


    @hookimpl
    def contrastive_register(registries):
        registries.backbones.register("outside_tiny", TinyNet)
        registries.augmentations.register("outside_invert", Invert)
        registries.losses.register("outside_align", AlignLoss)
"""


def test_outside_package_is_listed_and_trains_by_name(install, tmp_path, capsys):
    from contrastive.cli import main

    install(OUTSIDE, dist="outside-plugin", entry_point="outside", package="outside_plugin")
    assert main(["list", "losses"]) == 0
    assert "outside_align" in capsys.readouterr().out.split()
    out = tmp_path / "run"
    argv = ["fit", "--backbone.name", "outside_tiny", "--backbone.args", "{}", "--loss.name", "outside_align",
            "--loss.args", "{}", "--augmentation.1.name", "outside_invert", "--augmentation.1.args", "{p: 0.5}",
            "--trainer.max_steps", "2", "--trainer.batch_size", "8", "--trainer.progress", "false",
            "--trainer.output_dir", str(out)]
    assert main(argv) == 0
    assert (out / "backbone.safetensors").is_file()
    config = (out / "config.yaml").read_text()
    assert "outside_tiny" in config and "outside-plugin" in config
