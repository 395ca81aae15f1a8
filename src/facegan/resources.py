"""What the machine can hold: memory estimates checked before long work, so an absurd option fails in one line.

Core module: no torch, no numpy.
"""
from __future__ import annotations

import os

from facegan.errors import FaceganError

GIB = 1024**3


def available_memory_bytes() -> int | None:
    """Memory the kernel says a new allocation can get without swapping (MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_in_memory(needed_bytes: float, what: str, fix: str) -> None:
    """Refuse (one line, with the estimate) work whose estimated memory exceeds what is available now."""
    available = available_memory_bytes()
    if available is not None and needed_bytes > available:
        raise FaceganError(f"{what} needs about {needed_bytes / GIB:.1f} GiB of memory, but {available / GIB:.1f} GiB is available; {fix}")
