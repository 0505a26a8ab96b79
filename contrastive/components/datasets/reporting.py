"""How the datasets report bad data: the first few names of a list, warnings on stderr (once per
process where a scan repeats), and the shared-memory slot of the process reading (the main
process or a DataLoader worker).  Used by the file and stream datasets and by the loop's
`contrastive.training.data.guard_loader`."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import torch

REPORT_FIRST = 5  # bad files listed by name; the rest are counted
WORKER_SLOTS = 257  # slot 0: the main process; 1..256: DataLoader workers (id modulo 256)


def first_few(paths: Iterable[str], n: int = REPORT_FIRST) -> str:
    """The first ``n`` of ``paths`` joined with commas, then ``and K more``."""
    paths = list(paths)
    return ", ".join(paths[:n]) + (f" and {len(paths) - n} more" if len(paths) > n else "")


def warn(message: str) -> None:
    """``warning: message`` on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """`warn`, once per process: fit scans a folder again for evaluation."""
    if message not in _WARNED:
        _WARNED.add(message)
        warn(message)


def worker_slot() -> int:
    """This process's slot in the datasets' shared bookkeeping: 0 in the main process, ``1 + id
    mod 256`` in DataLoader worker ``id``."""
    info = torch.utils.data.get_worker_info()
    return 0 if info is None else 1 + info.id % (WORKER_SLOTS - 1)
