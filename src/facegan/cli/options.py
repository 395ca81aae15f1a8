"""Option values and output paths of `eval`, `audit` and `report`, checked before any work (one-line errors).

Numbers arrive as text and are parsed here, not by argparse, so a bad value (nan, -5, 1e999) is one
`error:` line like every other user error rather than argparse's usage block.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from facegan import files
from facegan.errors import FaceganError


def parse_int(name: str, text: str | int | None, minimum: int, maximum: int | None = None) -> int | None:
    """'2000' -> 2000 within [minimum, maximum]; None stays None; anything else is a FaceganError naming the option."""
    if text is None or isinstance(text, int):
        value = text
    else:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise FaceganError(f"{name} must be a whole number, got {text!r}") from None
    if value is not None and (value < minimum or (maximum is not None and value > maximum)):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise FaceganError(f"{name} must be {bound}, got {value}")
    return value


def parse_float(name: str, text: str | float, minimum: float, maximum: float) -> float:
    """'0.7' -> 0.7 within [minimum, maximum]; nan, inf and words are a FaceganError naming the option."""
    try:
        value = float(str(text).strip()) if not isinstance(text, (int, float)) else float(text)
    except ValueError:
        raise FaceganError(f"{name} must be a number, got {text!r}") from None
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise FaceganError(f"{name} must be a number between {minimum:g} and {maximum:g}, got {text}")
    return value


def check_writable_target(path: str | os.PathLike, what: str) -> Path:
    """Refuse, before any work, a file path that cannot be written: a folder, under a file, or in a read-only place.

    The first existing folder on the way is probed with a real temporary file (as root, permission bits
    alone would say yes to a read-only mount). Folders that do not exist yet are created by the writer.
    """
    if Path(path).is_dir():
        raise FaceganError(f"{what} {path} is a folder; give a file path")
    return files.check_writable_target(path, what)
