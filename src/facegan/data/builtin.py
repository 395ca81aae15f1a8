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
    identity: np.ndarray | None = None  # int64 (N,), codes into manifest["identity_names"]
    attributes: np.ndarray | None = None  # int8 (N, A) in {-1, 1}, columns manifest["attribute_names"]


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


RENDERED_NAME = "rendered-faces"
# What `data prepare builtin:rendered-faces` draws when --identities/--per-identity/--seed are not given.
RENDERED_DEFAULTS = {"identities": 500, "per_identity": 20, "seed": 0}
# Bump when the drawing changes, so a manifest says which faces a seed gave.
RENDERED_VERSION = 1


def is_builtin(source: str) -> bool:
    """Whether a SOURCE string names built-in data (`builtin:NAME`)."""
    return str(source).startswith(BUILTIN_PREFIX)


def builtin_names() -> list[str]:
    """The names accepted after `builtin:`."""
    return sorted([*BUILTIN_LOADERS, RENDERED_NAME])


def load_builtin(
    name: str,
    size: int,
    channels: int | None = None,
    *,
    identities: int | None = None,
    per_identity: int | None = None,
    seed: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> BuiltinData:
    """A built-in set at (size, size); `channels` None keeps its own (1 for lfw-subset, 3 for rendered).

    `name` may be given with or without the `builtin:` prefix. These are already face crops, so no
    detection or alignment is applied. `identities`, `per_identity` and `seed` choose what
    builtin:rendered-faces draws and are refused for the other sets; `on_progress(count)` hears of
    its images as they are drawn, and `workers` processes draw them (None: every core where safe).
    """
    key = name[len(BUILTIN_PREFIX) :] if name.startswith(BUILTIN_PREFIX) else name
    options = {"identities": identities, "per_identity": per_identity, "seed": seed}
    if key == RENDERED_NAME:
        chosen = {key: RENDERED_DEFAULTS[key] if value is None else value for key, value in options.items()}
        return _load_rendered(size, channels, on_progress=on_progress, workers=workers, **chosen)
    given = [f"--{option.replace('_', '-')}" for option, value in options.items() if value is not None]
    if given and key in BUILTIN_LOADERS:
        raise FaceganError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to {BUILTIN_PREFIX}{RENDERED_NAME}, not {BUILTIN_PREFIX}{key}; drop {'it' if len(given) == 1 else 'them'}")
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


def _load_rendered(
    size: int,
    channels: int | None,
    identities: int,
    per_identity: int,
    seed: int,
    on_progress: Callable[[int], None] | None,
    workers: int | None,
) -> BuiltinData:
    from facegan.data.rendered import identity_names, render_faces

    images, identity, attributes, attribute_names = render_faces(
        identities, per_identity, size, seed, workers=workers, on_progress=on_progress
    )
    if channels is not None and channels != 3:
        images = np.stack([convert_channels(image, channels) for image in images])
    names = identity_names(identities)
    paths = [f"{BUILTIN_PREFIX}{RENDERED_NAME}/{names[code]}/{index % per_identity + 1:04d}" for index, code in enumerate(identity.tolist())]
    manifest = {
        "builtin": RENDERED_NAME,
        "description": "procedural cartoon faces drawn by facegan from random numbers: not photographs, no real person",
        "renderer_version": RENDERED_VERSION,
        "identities": identities,
        "per_identity": per_identity,
        "seed": seed,
        "identity_names": names,
        "attribute_names": attribute_names,
    }
    return BuiltinData(images=images, paths=paths, manifest=manifest, identity=identity, attributes=attributes)
