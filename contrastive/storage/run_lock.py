"""One writer per run directory: ``OUTPUT_DIR/.lock``, held for the life of a ``fit``.

The lock is an ``flock`` on that file (POSIX advisory lock): the kernel releases it when the
holding process dies, however it dies, so a lock left by a killed run is never mistaken for a
live one.  The file also holds who took it (host, PID, start time, command line), to name the
other run in the error, and to note a take-over: a lock file that still names a holder but is
not locked belonged to a run that ended without releasing it (SIGKILL, power loss).  Where the
file system refuses ``flock`` (some network file systems), the holder's PID is checked on the
same host instead; a holder on another host is then assumed alive (the error says how to clear it).

A killed run's forked children (DataLoader workers) inherit the locked file and hold the lock
until they notice their parent is gone (torch's workers check every few seconds).  So when the
lock is held but the process the file names is gone on this host, `RunLock.acquire` waits
up to `ORPHAN_WAIT_S` for those orphans to exit before it reports the run as busy.

Readers (``eval``, ``embed``) use `holder` to tell that a run is still training.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from contrastive.errors import RecipeError
from contrastive.storage.run_dir import RunDir

LOCK_NAME = RunDir.LOCK
# Seconds to wait for the orphaned children of a killed holder to let the lock go (torch's
# DataLoader workers look for their parent every 5 s).
ORPHAN_WAIT_S = 15.0


def _describe(info: dict[str, Any]) -> str:
    return f"host {info.get('host', '?')}, pid {info.get('pid', '?')}, started {info.get('started', '?')}"


def _read(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _lock_or_wait_for_orphans(fd: int, previous: dict[str, Any]) -> bool:
    """``flock`` ``fd`` exclusively; when another holds it but the process ``previous`` names is
    gone on this host (its orphaned children hold it), retry for up to `ORPHAN_WAIT_S`.
    False: still held.  Other ``OSError`` errors propagate."""
    deadline = None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if deadline is None:
                if not _gone_here(previous):
                    return False
                deadline = time.monotonic() + ORPHAN_WAIT_S
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def _gone_here(info: dict[str, Any]) -> bool:
    """The lock file names a process of this host that no longer runs."""
    return info.get("pid") is not None and info.get("host") == socket.gethostname() and process_state(info["pid"]) == "gone"


def process_state(pid: Any) -> str:
    """``"gone"`` (no such process, or a zombie its parent has not reaped yet), ``"alive"`` (it
    runs, perhaps as another user) or ``"unknown"`` (not a PID) for process ``pid`` of this host."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return "gone"
    except (PermissionError, OverflowError):
        return "alive"
    except (ValueError, TypeError):
        return "unknown"
    try:
        with open(f"/proc/{int(pid)}/stat") as stat:
            return "gone" if stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X") else "alive"
    except (OSError, IndexError):
        return "alive"


def _pid_alive(pid: Any) -> bool:
    return process_state(pid) == "alive"


def holder(out: str | Path) -> dict[str, Any] | None:
    """Who holds ``out``'s lock now (host, pid, started, command), or None when nobody does."""
    path = Path(out) / LOCK_NAME
    if not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read(path) or {"host": "?", "pid": "?"}
    except OSError:  # no flock here: judge by the PID
        info = _read(path)
        same_host = info.get("host") == socket.gethostname()
        return info if info and (not same_host or _pid_alive(info.get("pid"))) else None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class RunLock:
    """The exclusive lock of one run directory; `acquire` before touching anything in it."""

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock, or raise [`RecipeError`][contrastive.errors.RecipeError] naming the run that holds it.  Returns a
        note when the lock of a run that ended without releasing it was taken over."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        previous = _read(self.path)
        try:
            if not _lock_or_wait_for_orphans(fd, previous):
                os.close(fd)
                orphans = (f" (that process is gone, but processes it started still hold the lock after "
                           f"{ORPHAN_WAIT_S:.0f} s: `fuser {self.path}` lists them)") if _gone_here(previous) else ""
                raise RecipeError(self._busy(previous) + orphans) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise
            if previous.get("pid") is not None and (
                previous.get("host") != socket.gethostname() or _pid_alive(previous.get("pid"))
            ):
                os.close(fd)
                raise RecipeError(self._busy(previous) + f" (no file locking here: if that run is gone, delete {self.path})") from None
        self.fd = fd
        info = {"host": socket.gethostname(), "pid": os.getpid(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        if previous.get("pid") is not None:
            return f"note: took over the lock of an earlier run that ended without releasing it ({_describe(previous)})"
        return None

    def _busy(self, info: dict[str, Any]) -> str:
        command = f": {info['command']}" if info.get("command") else ""
        return (f"trainer.output_dir '{self.path.parent}' is being written by another run ({_describe(info)}{command}); "
                f"wait for it to finish, stop it, or pick a new --trainer.output_dir")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)  # an empty file: released cleanly (not a take-over next time)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None
