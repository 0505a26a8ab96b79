"""One writer per run directory (:mod:`contrastive.storage.run_lock`)."""

from __future__ import annotations

import json
import os

import pytest

from contrastive.errors import RecipeError
from contrastive.storage.run_lock import LOCK_NAME, RunLock, holder


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    first = RunLock(tmp_path)
    assert first.acquire() is None
    assert holder(tmp_path)["pid"] == os.getpid()
    with pytest.raises(RecipeError, match=rf"is being written by another run \(host .*, pid {os.getpid()}"):
        RunLock(tmp_path).acquire()
    first.release()
    assert holder(tmp_path) is None
    second = RunLock(tmp_path)
    assert second.acquire() is None  # released cleanly: no take-over note
    second.release()


def test_the_lock_of_a_dead_run_is_taken_over_with_a_note(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"host": "node7", "pid": 999999, "started": "2026-01-01T00:00:00Z"}))
    assert holder(tmp_path) is None  # a file naming a holder, but nobody holds the lock
    lock = RunLock(tmp_path)
    note = lock.acquire()
    assert note.startswith("note: took over the lock of an earlier run") and "node7" in note and "999999" in note
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def _hold_then_orphan(path: str, linger: float) -> None:
    """A 'run' that takes the lock, forks a child (a DataLoader worker) that keeps the locked
    file for ``linger`` seconds, and dies at once without releasing it (SIGKILL-like)."""
    lock = RunLock(path)
    lock.acquire()
    if os.fork() == 0:  # the orphan: holds the inherited lock a while, then exits
        import time

        time.sleep(linger)
        os._exit(0)
    os._exit(0)


@pytest.mark.parametrize("linger, waits", [(1.0, True), (6.0, False)])
def test_orphaned_children_of_a_killed_run_are_waited_for(tmp_path, monkeypatch, linger, waits):
    import multiprocessing
    import time

    import contrastive.storage.run_lock as run_lock

    monkeypatch.setattr(run_lock, "ORPHAN_WAIT_S", 3.0)
    holder_process = multiprocessing.get_context("fork").Process(target=_hold_then_orphan, args=(str(tmp_path), linger))
    holder_process.start()
    holder_process.join()  # the holder is gone (reaped); its child still holds the flock
    lock = RunLock(tmp_path)
    started = time.monotonic()
    if waits:
        note = lock.acquire()
        assert note.startswith("note: took over the lock of an earlier run") and 0.5 < time.monotonic() - started < 3.0
        lock.release()
    else:
        with pytest.raises(RecipeError, match="that process is gone, but processes it started still hold the lock"):
            lock.acquire()
        assert time.monotonic() - started >= 3.0
