"""The signal handlers of :mod:`contrastive.training.preemption` (in-process, no training)."""

from __future__ import annotations

import os
import signal

import pytest

from contrastive.errors import Preempted, RecipeError
from contrastive.recipe.signals import parse_signals
from contrastive.training.preemption import Preemption


class OneProcess:
    num_processes = 1


def test_outside_the_loop_a_signal_stops_at_once_with_128_plus_its_number():
    preemption = Preemption(["USR2"]).install()
    try:
        with pytest.raises(Preempted, match="stopped by SIGUSR2") as caught:
            os.kill(os.getpid(), signal.SIGUSR2)
        assert caught.value.exit_status == 128 + signal.SIGUSR2
    finally:
        preemption.restore()
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL  # put back


def test_inside_the_loop_a_signal_is_noted_and_agreed_on(capfd):
    preemption = Preemption(["USR2"]).install()
    try:
        preemption.deferring = True
        assert preemption.agreed(OneProcess) is None
        os.kill(os.getpid(), signal.SIGUSR2)  # no exception: the step goes on
        assert preemption.agreed(OneProcess) == signal.SIGUSR2
        assert "SIGUSR2: finishing this step" in capfd.readouterr().err
    finally:
        preemption.restore()


def test_signal_names():
    assert parse_signals(["TERM", "sigusr1", "INT"]) == [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT]
    for bad in ("KILL", "STOP", "NOPE", "SIG_DFL"):
        with pytest.raises(RecipeError, match="cannot use"):
            parse_signals([bad])
