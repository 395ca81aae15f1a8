"""Resume state: written to a temp file and renamed (a killed run loses nothing), read weights-only."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from facegan.errors import FaceganError

STATE_NAME = "state.pt"


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write the resume state atomically (tensors, numbers, strings, lists and dicts only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a resume state with `weights_only=True`: no code is ever unpickled."""
    path = Path(path)
    if not path.is_file():
        raise FaceganError(f"no checkpoint to resume from at {path}; start the run without --resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated/corrupt/foreign files
        raise FaceganError(f"checkpoint {path} is corrupt or not a facegan checkpoint ({type(error).__name__}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != "facegan-train-state":
        raise FaceganError(f"{path} is not a facegan training checkpoint")
    return state
