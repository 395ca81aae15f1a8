"""Uploaded photos: the same checks as `facegan data prepare` (facegan.data.decode), plus a size cap.

An upload is read only through `decode_image`, which refuses non-regular files, files over the cap,
non-images (by content, not name), decompression bombs and damaged data; each refusal becomes one
FaceganError line the UI shows.
"""
from __future__ import annotations

import os

import numpy as np

from facegan.errors import FaceganError

# The largest upload accepted (also gradio's own limit, so a bigger file is refused before it is stored).
MAX_UPLOAD_BYTES = 10 * 2**20
MAX_UPLOAD_LABEL = "10 MB"
# A face photo needs no more pixels than this (a 4000 x 4000 photo); more is refused as a possible bomb.
MAX_UPLOAD_PIXELS = 16_000_000
# Suffixes the file picker offers (the content decides, whatever the name says).
UPLOAD_TYPES = [".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"]


def _refusal(skipped, what: str, name: str) -> FaceganError:
    from facegan.data.decode import SKIP_REASONS

    if skipped.reason == "too_large":
        return FaceganError(f"{what} {name} refused: larger than {MAX_UPLOAD_LABEL} or {MAX_UPLOAD_PIXELS:,} pixels; upload a smaller photo")
    if skipped.reason in ("not_an_image", "zero_byte"):
        return FaceganError(f"{what} {name} refused: not an image (its content is not PNG, JPEG, WebP, BMP or GIF); upload a photo")
    if skipped.reason == "no_face":
        return FaceganError(f"{what} {name}: dlib's detector finds no face in it; upload a photo with one clear, frontal face")
    return FaceganError(f"{what} {name} refused: {SKIP_REASONS[skipped.reason]}; upload another photo")


def _name(path) -> str:
    if path is None:
        return ""
    return os.path.basename(str(path))


def read_upload(path: str | os.PathLike | None, what: str = "photo") -> np.ndarray:
    """An uploaded file -> RGB uint8 (H, W, 3), or one FaceganError saying why it was refused."""
    from facegan.data.decode import SkippedImage, decode_image

    if path is None:
        raise FaceganError(f"no {what} uploaded; drop an image file (PNG, JPEG, WebP, BMP or GIF) on the upload box")
    try:
        return decode_image(path, max_pixels=MAX_UPLOAD_PIXELS, max_file_bytes=MAX_UPLOAD_BYTES, min_side=8)
    except SkippedImage as skipped:
        raise _refusal(skipped, what, _name(path)) from None


def prepare_upload(path: str | os.PathLike | None, size: int, channels: int, align: str = "dlib", what: str = "photo") -> np.ndarray:
    """An uploaded photo as a dataset stores faces: uint8 (size, size, channels), found and aligned as
    `facegan data prepare --align dlib` does (facegan.data.pipeline.prepare_image), or one FaceganError."""
    from facegan.data.decode import SkippedImage
    from facegan.data.pipeline import prepare_image

    if path is None:
        raise FaceganError(f"no {what} uploaded; drop an image file (PNG, JPEG, WebP, BMP or GIF) on the upload box")
    try:
        return prepare_image(path, size, align=align, channels=channels, max_pixels=MAX_UPLOAD_PIXELS, min_side=8,
                             max_file_bytes=MAX_UPLOAD_BYTES)
    except SkippedImage as skipped:
        raise _refusal(skipped, what, _name(path)) from None
