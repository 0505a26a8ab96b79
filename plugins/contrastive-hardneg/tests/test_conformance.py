"""The plugin's parts against the framework's contracts, with the kit contrastive ships
(``contrastive.testing``): one line per part, no checkout of contrastive needed."""

from __future__ import annotations

import pytest
from contrastive.registry import Registries
from contrastive.testing import check_augmentation, check_loss
from contrastive.testing.methods import check_method

from contrastive_hardneg import plugin


@pytest.fixture(scope="module")
def registries():
    registries = Registries()  # this plugin's parts alone, whether or not it is installed
    plugin.contrastive_register(registries=registries)
    return registries


def test_hard_negative_meets_the_loss_contract(registries):
    check_loss("hard_negative", registries=registries, temperature=0.5, beta=1.0, tau_plus=0.1)


def test_gaussian_noise_meets_the_augmentation_contract(registries):
    check_augmentation("gaussian_noise", registries=registries, std=0.1, p=1.0)


def builtins_and_this_plugin():
    """The built-in parts the method suite trains with, plus this plugin's (module-level: the
    two-process rule calls it again in spawned processes)."""
    import contrastive

    registries = contrastive.load_registries(autoload=False)
    with registries.registering_as("hardneg"):
        plugin.contrastive_register(registries=registries)
    return registries


def test_hardneg_simclr_meets_the_method_contract():
    check_method("hardneg_simclr", builtins_and_this_plugin)
