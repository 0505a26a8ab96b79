"""Shared fixtures: the full registries (built-ins only, no entry-point plugins).

Helpers such as ``tiny_recipe_dict`` live in :mod:`tests.helpers`.

Under pytest-xdist (``-n N``) each worker gets an equal share of the cores for its intra-op
threads (and so do the processes its tests launch): N workers with all cores each would
oversubscribe the machine and run slower than one."""

import os

if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:  # before torch is imported
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _workers))

import pytest  # noqa: E402

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
