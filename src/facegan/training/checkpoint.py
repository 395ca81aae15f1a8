"""Resume state: written to a temp file and renamed (a killed run loses nothing), read weights-only."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from facegan.errors import FaceganError
from facegan.run import STATE_NAME  # noqa: F401  (re-exported for older importers; the layout lives in facegan.run)

# What a facegan-train-state must hold, and of which type (checked on load: a damaged file gives one line).
_REQUIRED: dict[str, tuple[type, ...]] = {
    "num_images_seen": (int,),
    "num_steps": (int,),
    "G": (dict,),
    "D": (dict,),
    "opt_G": (dict,),
    "opt_D": (dict,),
    "data_order": (torch.Tensor,),
    "data_position": (int,),
    "rng_data": (torch.Tensor,),
    "rng_noise": (torch.Tensor,),
    "rng_augment": (torch.Tensor,),
    "rng_torch": (torch.Tensor,),
}
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "G_ema": (dict,),
    "rng_cuda": (list, tuple),
    "seconds": (int, float),
    "dataset_hash": (str,),
    "best_fd": (int, float),
}
_RNG_KEYS = ("rng_data", "rng_noise", "rng_augment", "rng_torch")


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write the resume state atomically (tensors, numbers, strings, lists and dicts only).

    A failed write (a full disk) removes its temp file and raises one FaceganError; the previous
    checkpoint, if any, stays as it was.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise FaceganError(
            f"cannot write the checkpoint {path} ({error.strerror or error}); free some space or fix the folder, "
            "then continue with --resume (the previous checkpoint is kept)"
        ) from None
    return path


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a resume state with `weights_only=True`: no code is ever unpickled; its structure is checked."""
    path = Path(path)
    if not path.is_file():
        raise FaceganError(f"no checkpoint to resume from at {path}; start the run without --resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated/corrupt/foreign files
        raise FaceganError(f"checkpoint {path} is corrupt or not a facegan checkpoint ({type(error).__name__}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != "facegan-train-state":
        raise FaceganError(f"{path} is not a facegan training checkpoint")
    check_state(state, path)
    return state


def check_state(state: dict[str, Any], path: str | os.PathLike = "the checkpoint") -> None:
    """Refuse a resume state whose fields are missing or of the wrong type, with one line naming the field."""

    def damaged(detail: str) -> FaceganError:
        return FaceganError(f"checkpoint {path} is damaged ({detail}); delete it to start over, or restore a good copy")

    def kind_of(value: Any) -> str:
        return f"a {tuple(value.shape)} tensor" if isinstance(value, torch.Tensor) else type(value).__name__

    for key, types in {**_REQUIRED, **_OPTIONAL}.items():
        if key not in state:
            if key in _REQUIRED:
                raise damaged(f"'{key}' is missing")
            continue
        value = state[key]
        # bool is an int to Python, but never a valid count.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise damaged(f"'{key}' should be {' or '.join(t.__name__ for t in types)}, found {kind_of(value)}")
    for key in ("num_images_seen", "num_steps", "data_position"):
        if state[key] < 0:
            raise damaged(f"'{key}' is negative")
    for net in ("G", "D", "G_ema"):
        for name, value in state.get(net, {}).items():
            if not isinstance(value, torch.Tensor):
                raise damaged(f"'{net}.{name}' should be a tensor, found {kind_of(value)}")
    order = state["data_order"]
    if order.dim() != 1 or order.dtype != torch.int64:
        raise damaged(f"'data_order' should be a 1-D int64 tensor, found {kind_of(order)} of {order.dtype}")
    if state["data_position"] > len(order):
        raise damaged("'data_position' is past the end of 'data_order'")
    for key in _RNG_KEYS:
        if state[key].dtype != torch.uint8 or state[key].dim() != 1:
            raise damaged(f"'{key}' should be a 1-D uint8 RNG state, found {kind_of(state[key])} of {state[key].dtype}")
