"""Shared fixtures: the full registries (built-ins only, no entry-point plugins).

Helpers such as ``tiny_recipe_dict`` live in :mod:`tests.helpers`."""

import pytest

import contrastive


@pytest.fixture(scope="session")
def registries():
    return contrastive.load_registries(autoload=False)


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for the test, restored after: for many tiny ops (per-draw torchvision
    calls, tiny training steps), where extra threads on a shared machine only add contention."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
