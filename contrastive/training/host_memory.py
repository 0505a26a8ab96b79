"""glibc's allocator, tuned for training on the CPU: freed memory is kept for reuse.

By default glibc serves every allocation above its mmap threshold (128 KiB, adapting up to
32 MiB) with a fresh ``mmap`` and gives it back with ``munmap`` when freed, and trims the heap's
free top back to the OS.  A training step on the CPU allocates and frees the same large
activation tensors every step (ResNet-18 at 32 px, batch 256: ~67-134 MB each), so each step
pays for page faults and the kernel zeroing those pages again.  Raising the mmap threshold to
1 GiB and the trim threshold to its maximum keeps freed memory in the heap for the next step:
ResNet-18 training steps 23 -> 31 views/s on 2 cores (docs/performance.md has the measurement).
The resident size stays near the peak a step needs instead of falling between steps.

The price is memory: freed blocks stay mapped and the heap fragments, so the peak resident size
of that run rose from 3.4 to 4.7 GB.  ``CONTRASTIVE_KEEP_FREED_MEMORY=0`` turns it off.

Only glibc on Linux is touched, only once per process, and never when the user already chose:
any ``MALLOC_*`` tunable or ``GLIBC_TUNABLES`` in the environment, or a preloaded allocator
(``LD_PRELOAD``: jemalloc, tcmalloc, mimalloc ...), leaves the allocator as it is.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int


def glibc_on_linux() -> bool:
    """Whether this process runs on Linux with glibc (the only allocator this module tunes)."""
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _left_alone(environ) -> bool:
    """Opted out (``CONTRASTIVE_KEEP_FREED_MEMORY=0``), or the user already chose an allocator."""
    return (
        environ.get("CONTRASTIVE_KEEP_FREED_MEMORY", "1").strip().lower() in ("0", "false", "no", "off")
        or any(key.startswith("MALLOC_") for key in environ)
        or "GLIBC_TUNABLES" in environ
        or bool(environ.get("LD_PRELOAD", "").strip())
    )


@functools.cache
def keep_freed_host_memory() -> bool:
    """Apply the settings above (once per process); returns whether they are in effect."""
    if not glibc_on_linux() or _left_alone(os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
        )
    except (OSError, AttributeError):
        return False
