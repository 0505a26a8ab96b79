"""Graceful preemption: a scheduler's signal makes the run save a checkpoint and leave.

Kubernetes and SLURM (at preemption) send SIGTERM and wait a grace period before SIGKILL; SLURM
sends SIGUSR1 ahead of the time limit with ``--signal=USR1@120``; Ctrl-C sends SIGINT.  For the
signals of ``trainer.preempt_signals`` (default ``[TERM, INT, USR1]``):

* during the training loop the first signal is only noted; the current step finishes, every
  process learns of it at the same step (`Preemption.agreed`, a MAX all-reduce of one
  integer per step when there are several processes, so a signal that reached one rank stops
  them all at that step), a checkpoint is written, the trackers are closed and
  [`Preempted`][contrastive.errors.Preempted] ends the command with ``128 + signal`` (143 for
  SIGTERM);
* outside the loop (building the run, the final evaluation: moments with nothing new to save)
  the first signal stops at once with the same exit status;
* the same collective carries a callback's request to stop the run
  (`Preemption.agreed_with_stop`): every process ends after the same step;
* a second signal exits at once (``os._exit``) — a checkpoint half-written then is under its
  temporary name, so the newest complete checkpoint still verifies.

Handlers are installed only in the main thread (Python's rule) and put back when the run ends.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence

from contrastive.errors import Preempted
from contrastive.recipe.signals import DEFAULT_SIGNALS, parse_signals


class Preemption:
    """The signal handlers of one run (see the module docstring)."""

    def __init__(self, signals: Sequence[str] = DEFAULT_SIGNALS) -> None:
        self.signals = parse_signals(signals)
        self.received: int | None = None  # the first signal's number
        self.deferring = False  # True inside the training loop: note the signal, stop at the step's end
        self._previous: dict[int, object] = {}
        self._pid = os.getpid()

    def install(self) -> Preemption:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker: the main process decides and shuts it down
            return
        name = signal.Signals(signum).name
        if self.received is not None:
            os.write(2, f"\n{name} again: exiting now, without saving (the newest complete checkpoint is intact)\n".encode())
            os._exit(128 + signum)
        self.received = signum
        if not self.deferring:
            raise Preempted(f"stopped by {name}", signum)
        os.write(2, f"\n{name}: finishing this step, then saving a checkpoint and stopping (again: exit now)\n".encode())

    def agreed(self, accelerator) -> int | None:
        """The signal any process received, the same answer on every process (a collective)."""
        return self.agreed_with_stop(accelerator, False)[0]

    def agreed_with_stop(self, accelerator, stop: bool) -> tuple[int | None, bool]:
        """The signal any process received and whether any process asks to stop (a callback's
        [`request_stop`][contrastive.training.callbacks.view.RunView.request_stop]): the same answers on
        every process, from one collective (a MAX all-reduce of two integers)."""
        if accelerator.num_processes == 1:
            return self.received, stop
        import torch

        flags = torch.tensor([self.received or 0, int(stop)], device=accelerator.device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        return int(flags[0].item()) or None, bool(flags[1].item())
