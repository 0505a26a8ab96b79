"""The example plugin in plugins/contrastive-hardneg, when installed (CI installs it)."""

from __future__ import annotations

import importlib.metadata

import pytest

import contrastive

try:
    DIST = importlib.metadata.distribution("contrastive-hardneg")
except importlib.metadata.PackageNotFoundError:
    DIST = None

pytestmark = pytest.mark.skipif(
    DIST is None, reason="contrastive-hardneg is not installed (pip install -e plugins/contrastive-hardneg)"
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    monkeypatch.delenv("CONTRASTIVE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("CONTRASTIVE_DISABLE_PLUGINS", raising=False)


def test_example_plugin_is_loaded():
    registries = contrastive.load_registries()
    label = f"plugin 'hardneg' (distribution contrastive-hardneg {DIST.version})"
    assert "hard_negative" in registries.losses.names()
    assert "gaussian_noise" in registries.augmentations.names()
    assert registries.losses.source("hard_negative") == label
    assert registries.augmentations.source("gaussian_noise") == label
    info = next(p for p in registries.plugins if p.name == "hardneg")
    assert info.registered == {"augmentations": ["gaussian_noise"], "losses": ["hard_negative"],
                               "methods": ["hardneg_simclr"]}
    assert registries.methods.source("hardneg_simclr") == label


def test_example_plugin_builds_and_runs():
    import torch

    registries = contrastive.load_registries()
    loss = registries.losses.build("hard_negative", temperature=0.5, beta=1.0, tau_plus=0.1)
    assert loss(torch.randn(4, 8), torch.randn(4, 8)).ndim == 0
    noise = registries.augmentations.build("gaussian_noise", std=0.1, p=1.0)
    images = torch.rand(2, 3, 8, 8)
    assert noise(images).shape == images.shape


def test_example_plugin_can_be_disabled():
    registries = contrastive.load_registries(disable=["hardneg"])
    assert "hard_negative" not in registries.losses


def test_the_plugin_depends_on_the_distribution_that_provides_contrastive():
    """``contrastive`` on PyPI is another project: plugins must depend on ``contrastive-ssl``,
    the distribution this package is installed as (pip resolves the dependency to it)."""
    from packaging.requirements import Requirement

    ours = importlib.metadata.packages_distributions()["contrastive"]
    assert ours == ["contrastive-ssl"] or set(ours) == {"contrastive-ssl"}
    needed = [Requirement(r) for r in DIST.requires if "extra ==" not in r]
    assert any(r.name == "contrastive-ssl" and importlib.metadata.version("contrastive-ssl") in r.specifier for r in needed)
    assert not any(r.name == "contrastive" for r in needed)
