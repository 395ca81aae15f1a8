"""Turning a decoded photo into a square face image: dlib 5-point alignment, centre crop, or plain resize.

All functions take and return uint8 HWC arrays. dlib models are loaded once per process, on first
use, so a worker pool pays for them once per worker rather than once per image.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from facegan.errors import FaceganError

AlignMode = Literal["center", "dlib", "none"]
ALIGN_MODES: tuple[str, ...] = ("center", "dlib", "none")

# Lanczos is antialiased in Pillow (its kernel widens with the reduction factor), so shrinking a
# 4000 px photo to 64 px does not alias; it is also what StyleGAN's dataset tool uses.
PHOTO_RESAMPLE = Image.Resampling.LANCZOS

# The crop dlib's face recogniser was trained on (it calls get_face_chip with size=150, padding=0.25);
# using the same padding keeps our faces comparable to the recogniser's input.
DLIB_CHIP_PADDING = 0.25
# HOG detection cost grows with pixels; larger photos are searched on a shrunken copy (faces in
# them are large anyway) and the landmarks are then fitted at full resolution.
DETECT_MAX_SIDE = 1024
# HOG finds faces of about 80 px and up; upsampling once (2x) finds ~40 px faces at 4x the cost,
# so it is tried only when nothing was found and the image is small enough for that to be cheap.
UPSAMPLE_MAX_SIDE = 800

LANDMARKS_5_NAME = "shape_predictor_5_face_landmarks.dat"


def dlib_model_path(name: str) -> Path:
    """Path of a model file shipped by the `face_recognition_models` package (e.g. the 5-point predictor).

    The package is located without importing it: its __init__ imports pkg_resources, which
    modern environments do not have.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FaceganError(
            "dlib model files not found: the face-recognition-models package is not installed "
            "(install it with `pip install face-recognition-models`, or use --align center)"
        )
    path = Path(spec.origin).parent / "models" / name
    if not path.is_file():
        raise FaceganError(f"dlib model file {name} is missing from {path.parent}; reinstall face-recognition-models")
    return path


@functools.lru_cache(maxsize=1)
def load_dlib_models() -> tuple[Any, Any]:
    """(HOG frontal face detector, 5-point shape predictor), loaded once per process."""
    try:
        import dlib
    except ImportError:
        raise FaceganError("--align dlib needs dlib (install `dlib-bin`), or use --align center") from None
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_model_path(LANDMARKS_5_NAME)))


def find_largest_face(image: np.ndarray) -> Any | None:
    """The largest face dlib's HOG detector finds in an RGB uint8 image, as a dlib.rectangle, or None."""
    import dlib

    detector, _ = load_dlib_models()
    height, width = image.shape[:2]
    scale = 1.0
    search = image
    if max(height, width) > DETECT_MAX_SIDE:
        scale = max(height, width) / DETECT_MAX_SIDE
        shrunk_size = (max(1, round(width / scale)), max(1, round(height / scale)))
        # reducing_gap: box-reduce by an integer factor first (fast), then resample; the detector
        # does not need a perfect shrink.
        search = np.asarray(Image.fromarray(image).resize(shrunk_size, Image.Resampling.BILINEAR, reducing_gap=2.0))
    search = np.ascontiguousarray(search)
    faces = list(detector(search, 0))
    if not faces and max(search.shape[:2]) <= UPSAMPLE_MAX_SIDE:
        faces = list(detector(search, 1))
    if not faces:
        return None
    # max() keeps the first of equal areas, and dlib lists detections by score, so ties go to confidence.
    largest = max(faces, key=lambda rect: rect.width() * rect.height())
    if scale == 1.0:
        return largest
    return dlib.rectangle(
        round(largest.left() * scale),
        round(largest.top() * scale),
        round(largest.right() * scale),
        round(largest.bottom() * scale),
    )


def align_face(image: np.ndarray, size: int, padding: float = DLIB_CHIP_PADDING) -> np.ndarray | None:
    """dlib 5-point aligned face chip (size, size, 3) of the largest face, or None when there is no face."""
    import dlib

    rgb = np.ascontiguousarray(_as_rgb(image))
    face = find_largest_face(rgb)
    if face is None:
        return None
    _, predictor = load_dlib_models()
    landmarks = predictor(rgb, face)
    # get_face_chip rotates/scales so the eyes and nose land where dlib's recogniser expects them,
    # and downsamples through a pyramid, so large faces do not alias.
    return np.asarray(dlib.get_face_chip(rgb, landmarks, size=size, padding=padding), dtype=np.uint8)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central square of the image, resized to (size, size) in one antialiased step."""
    height, width = image.shape[:2]
    side = min(height, width)
    left, top = (width - side) // 2, (height - side) // 2
    return _resize(image, size, box=(left, top, left + side, top + side))


def resize_whole(image: np.ndarray, size: int) -> np.ndarray:
    """The whole image squeezed to (size, size); the aspect ratio is not kept."""
    return _resize(image, size, box=None)


def align_image(image: np.ndarray, size: int, align: AlignMode) -> np.ndarray | None:
    """Apply one alignment mode to an RGB uint8 image; None means no face was found (dlib only)."""
    if align == "dlib":
        return align_face(image, size)
    if align == "center":
        return center_crop(image, size)
    if align == "none":
        return resize_whole(image, size)
    raise FaceganError(f"unknown alignment {align!r} (choose one of: {', '.join(ALIGN_MODES)})")


def convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """HWC uint8 with 1 or 3 channels -> HWC uint8 with `channels` (grey uses ITU-R 601 luma, as Pillow)."""
    image = image if image.ndim == 3 else image[:, :, None]
    current = image.shape[2]
    if current == channels:
        return image
    if current == 1 and channels == 3:
        return np.repeat(image, 3, axis=2)
    if current == 3 and channels == 1:
        return np.asarray(Image.fromarray(np.ascontiguousarray(image)).convert("L"))[:, :, None]
    raise ValueError(f"cannot convert {current} channels to {channels}")


def _as_rgb(image: np.ndarray) -> np.ndarray:
    return convert_channels(image, 3)


def _resize(image: np.ndarray, size: int, box: tuple[int, int, int, int] | None) -> np.ndarray:
    channels = 1 if image.ndim == 2 else image.shape[2]
    pil_image = Image.fromarray(np.ascontiguousarray(image if channels != 1 else image.reshape(image.shape[:2])))
    resized = np.asarray(pil_image.resize((size, size), PHOTO_RESAMPLE, box=box), dtype=np.uint8)
    return resized.reshape(size, size, channels)
