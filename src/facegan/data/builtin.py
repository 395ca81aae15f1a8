"""Built-in face data that ships with the installed packages, so demos and tests need no download."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from facegan.images import convert_channels
from facegan.errors import FaceganError

BUILTIN_PREFIX = "builtin:"

# The built-in faces are tiny (25 px); bicubic upsampling is smooth where Lanczos would ring.
BUILTIN_RESAMPLE = Image.Resampling.BICUBIC


@dataclass
class BuiltinData:
    """Prepared pixels of a built-in set plus what its manifest should say about them."""

    images: np.ndarray  # uint8 (N, size, size, C)
    paths: list[str]
    manifest: dict[str, Any] = field(default_factory=dict)


def _lfw_subset_faces() -> tuple[np.ndarray, dict[str, Any]]:
    """scikit-image's LFW subset: 100 faces (rows 0..99; rows 100..199 are non-faces), 25x25 grey."""
    from skimage.data import lfw_subset

    faces = lfw_subset()[:100]  # (100, 25, 25) float64 in [0, 1]
    pixels = np.rint(np.clip(faces, 0.0, 1.0) * 255.0).astype(np.uint8)
    return pixels, {"description": "scikit-image data.lfw_subset(): 100 grey 25x25 face crops from LFW"}


# name -> loader returning uint8 (N, H, W) grey or (N, H, W, 3) colour crops and manifest notes.
BUILTIN_LOADERS: dict[str, Callable[[], tuple[np.ndarray, dict[str, Any]]]] = {
    "lfw-subset": _lfw_subset_faces,
}


def is_builtin(source: str) -> bool:
    """Whether a SOURCE string names built-in data (`builtin:NAME`)."""
    return str(source).startswith(BUILTIN_PREFIX)


def builtin_names() -> list[str]:
    """The names accepted after `builtin:`."""
    return sorted(BUILTIN_LOADERS)


def load_builtin(name: str, size: int, channels: int | None = None) -> BuiltinData:
    """A built-in set resized to (size, size); `channels` None keeps its own (1 for lfw-subset).

    `name` may be given with or without the `builtin:` prefix. These are already face crops, so no
    detection or alignment is applied.
    """
    key = name[len(BUILTIN_PREFIX) :] if name.startswith(BUILTIN_PREFIX) else name
    loader = BUILTIN_LOADERS.get(key)
    if loader is None:
        known = ", ".join(BUILTIN_PREFIX + known_name for known_name in builtin_names())
        raise FaceganError(f"unknown built-in data {BUILTIN_PREFIX}{key} (known: {known})")
    crops, notes = loader()
    native_channels = 1 if crops.ndim == 3 else crops.shape[3]
    channels = native_channels if channels is None else channels
    images = np.empty((len(crops), size, size, channels), dtype=np.uint8)
    for index, crop in enumerate(crops):
        resized = np.asarray(Image.fromarray(crop).resize((size, size), BUILTIN_RESAMPLE), dtype=np.uint8)
        if resized.ndim == 2:
            resized = resized[:, :, None]
        images[index] = convert_channels(resized, channels)
    paths = [f"{BUILTIN_PREFIX}{key}/{index:04d}" for index in range(len(crops))]
    return BuiltinData(images=images, paths=paths, manifest={"builtin": key, **notes})
