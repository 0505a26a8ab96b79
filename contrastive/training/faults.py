"""How a run ends when it cannot go on: a preemption signal, or a lost process.

* `stopped_by` — the [`Preempted`][contrastive.errors.Preempted] of a signal, saying where
  the run stopped and how to continue it.
* `lost_processes_are_errors` — with several processes, a collective that fails because
  another process died (gloo: "Connection reset by peer", NCCL: a watchdog error) or did not
  answer within ``trainer.collective_timeout`` becomes one line naming the lost rank(s): each
  process writes its host and PID into the rendezvous store when training starts, and the
  survivor checks which PIDs on its own host are gone (a rank on another host is named as
  unreachable).  Every surviving process then exits with status 2 within the timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from contrastive.errors import Preempted, TrainingError
from contrastive.storage.run_lock import process_state

if TYPE_CHECKING:
    from contrastive.training.build import Run

_KEY = "contrastive/process/{}"
#: Words of the errors torch's backends raise when a peer is gone or silent.
_COLLECTIVE_FAILURE = ("gloo", "NCCL", "Connection reset", "Connection closed", "Broken pipe", "timed out",
                       "Timed out", "Socket Timeout", "failed to recv", "failed to send")


def stopped_by(signum: int, run: Run, checkpoint: Path | None) -> Preempted:
    """The [`Preempted`][contrastive.errors.Preempted] for ``signum`` after the run's current step."""
    state = run.state
    saved = f"checkpoint {checkpoint}" if checkpoint else "the newest checkpoint is in " + str(run.checkpoint_dir)
    return Preempted(
        f"stopped by {signal.Signals(signum).name} after step {state.global_step} of {state.total_steps} "
        f"(epoch {state.epoch}); {saved}; continue with the same command and --trainer.resume auto",
        signum,
    )


def _store():
    import torch.distributed as dist

    from contrastive.distributed import is_distributed

    if not is_distributed():
        return None
    try:
        return dist.distributed_c10d._get_default_store()
    except (RuntimeError, ValueError, AttributeError):
        return None


def _is_collective_failure(exc: BaseException) -> bool:
    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    return isinstance(exc, RuntimeError) and any(word in str(exc) for word in _COLLECTIVE_FAILURE)


def lost_ranks(store, world: int, me: int) -> list[str]:
    """``"rank R (pid P) exited"`` for each other process known to be gone; unknown ones are
    named as unreachable."""
    store.set_timeout(timedelta(seconds=5))  # the store may live in the lost process
    host = socket.gethostname()
    found = []
    for rank in range(world):
        if rank == me:
            continue
        try:
            info = json.loads(store.get(_KEY.format(rank)))
        except Exception:  # noqa: BLE001  a store served by the dead process: say what we know
            found.append(f"rank {rank} (unreachable; rank 0 hosts the rendezvous)")
            continue
        if info.get("host") != host:
            continue  # not checkable from here
        if _exited(info.get("pid")):
            found.append(f"rank {rank} (pid {info['pid']}) exited")
    return found


def _exited(pid, wait: float = 3.0) -> bool:
    """Whether process ``pid`` of this host is gone, waiting up to ``wait`` seconds: a killed
    process closes its sockets (which is how the survivor learns of it) before it is gone."""
    deadline = time.monotonic() + wait
    while process_state(pid) != "gone":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@contextlib.contextmanager
def lost_processes_are_errors(run: Run) -> Iterator[None]:
    """Within: a failed collective is a [`TrainingError`][contrastive.errors.TrainingError] naming the lost process(es)."""
    store, accelerator = _store(), run.accelerator
    if store is None:
        yield
        return
    me, world = accelerator.process_index, accelerator.num_processes
    store.set(_KEY.format(me), json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    try:
        yield
    except Exception as exc:
        if not _is_collective_failure(exc):
            raise
        lost = lost_ranks(store, world, me)
        who = ", ".join(lost) if lost else (
            f"a process did not answer within trainer.collective_timeout ({run.trainer.collective_timeout:g} s)")
        raise TrainingError(
            f"lost contact with the other processes at step {run.state.global_step}: {who}; this is rank {me} of "
            f"{world}, stopping. The newest checkpoint is in {run.checkpoint_dir}: restart every process with "
            f"--trainer.resume auto"
        ) from exc
