"""Turning a decoded photo into a square face image: dlib 5-point alignment, centre crop, or plain resize.

The modes are dispatched here; the geometry lives in `facegan.images`, dlib alignment in `facegan.faces`.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from facegan.errors import FaceganError
from facegan.images import center_crop, convert_channels, resize_whole

AlignMode = Literal["center", "dlib", "none"]
ALIGN_MODES: tuple[str, ...] = ("center", "dlib", "none")

__all__ = ["ALIGN_MODES", "AlignMode", "align_image", "convert_channels"]


def align_image(image: np.ndarray, size: int, align: AlignMode) -> np.ndarray | None:
    """Apply one alignment mode to an RGB uint8 image; None means no face was found (dlib only)."""
    if align == "dlib":
        from facegan.faces.align import align_face

        return align_face(image, size)
    if align == "center":
        return center_crop(image, size)
    if align == "none":
        return resize_whole(image, size)
    raise FaceganError(f"unknown alignment {align!r} (choose one of: {', '.join(ALIGN_MODES)})")
