"""Writing files safely: atomic replacement, and never over something facegan did not mean to replace.

Core module: no torch, no numpy. Every file facegan writes (JSON, PNG, checkpoints, exports) goes
through here, so a reader sees either the old or the new file, never half of one.
"""
from __future__ import annotations

import os
from pathlib import Path


def write_bytes_atomic(path: str | os.PathLike, payload: bytes) -> None:
    """Write bytes to `path` so a reader sees either the old or the new file, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
