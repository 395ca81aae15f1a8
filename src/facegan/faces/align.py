"""dlib 5-point face alignment: the largest face a HOG detector finds, aligned as dlib's recogniser expects.

All functions take and return uint8 HWC arrays. dlib models are loaded once per process, on first
use, so a worker pool pays for them once per worker rather than once per image.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facegan.errors import FaceganError
from facegan.images import convert_channels

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

    rgb = np.ascontiguousarray(convert_channels(image, 3))
    face = find_largest_face(rgb)
    if face is None:
        return None
    _, predictor = load_dlib_models()
    landmarks = predictor(rgb, face)
    # get_face_chip rotates/scales so the eyes and nose land where dlib's recogniser expects them,
    # and downsamples through a pyramid, so large faces do not alias.
    return np.asarray(dlib.get_face_chip(rgb, landmarks, size=size, padding=padding), dtype=np.uint8)
