"""The method contract (:mod:`contrastive.testing.methods`), checked for every registered method:
the built-ins and every installed plugin's (autoload on: a plugin's method is checked as soon as
its distribution is installed).  ``-k NAME`` runs one method's checks."""

from __future__ import annotations

import pytest

from contrastive.testing.methods import (
    FitRuns,
    check_after_step,
    check_batch_along_dim0,
    check_forward_is_pure,
    check_grad_cache,
    check_loss_is_finite_and_differentiable,
    check_resume,
    check_two_processes,
    default_registries,
    run_two_processes,
)

METHODS = default_registries().methods.names()


# -- the tests ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", METHODS)
def test_forward_is_pure(name):
    check_forward_is_pure(default_registries, name)


@pytest.mark.parametrize("name", METHODS)
def test_outputs_carry_the_batch_along_dim0(name):
    check_batch_along_dim0(default_registries, name)


@pytest.mark.parametrize("name", METHODS)
def test_loss_is_finite_and_differentiable(name):
    check_loss_is_finite_and_differentiable(default_registries, name)


@pytest.mark.parametrize("name", METHODS)
def test_grad_cache_equals_one_chunk(name):
    check_grad_cache(default_registries, name)


@pytest.fixture(scope="module")
def fit_runs(tmp_path_factory):
    return FitRuns(default_registries, tmp_path_factory.mktemp("conformance_fits"))


@pytest.mark.parametrize("name", METHODS)
def test_after_step_once_per_applied_step(name, fit_runs):
    check_after_step(fit_runs, name)


@pytest.mark.parametrize("name", METHODS)
def test_state_survives_checkpoint_and_resume_bit_exactly(name, fit_runs):
    check_resume(fit_runs, name)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    return run_two_processes(tmp_path_factory.mktemp("conformance_gloo"), METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_two_processes_equal_one_process(name, two_processes):
    check_two_processes(default_registries, name, two_processes)
