"""Files a reader may open at any moment, written atomically: a temporary file beside the
target, fsynced, then renamed over it — a reader (or a kill) sees the old file or the new one,
never half of one; and the readers of a run's JSON files that tolerate what a kill leaves."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)``, then move the result to ``path`` in one rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(str(tmp))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    """``path.write_text(text)``, atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_json_object(path: str | Path) -> dict | None:
    """The JSON object in ``path``; None when the file is missing, unreadable, not JSON or not an
    object (a results.json a kill cut short, say)."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def metric_records(path: str | Path) -> list[tuple[str, dict]]:
    """``(line, record)`` for each line of a ``metrics.jsonl`` that is a JSON object with an int
    ``step``, in file order; other lines (one a kill cut short) are left out.  ``[]`` without the file."""
    path = Path(path)
    if not path.is_file():
        return []
    kept = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            kept.append((line, record))
    return kept
