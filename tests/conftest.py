"""Shared fixtures: the full registries (built-ins only, no entry-point plugins).

Helpers such as ``tiny_recipe_dict`` live in :mod:`tests.helpers`."""

import pytest

import contrastive


@pytest.fixture(scope="session")
def registries():
    return contrastive.load_registries(autoload=False)
