"""The pixel baseline: a face is its grey pixels, standardised; two faces are compared by cosine.

The weakest sensible recogniser, and the floor any recogniser must clear: it identifies people only as
far as their pictures look alike pixel by pixel, so pose, light and background fool it. Registered
as "pixel"; needs no weights and no torch.
"""
from __future__ import annotations

import numpy as np

from facegan.errors import FaceganError
from facegan.faces.match import MatchRule
from facegan.faces.recognisers import MatchRuleRecogniser

__all__ = ["MATCH_RULE", "PixelRecogniser"]

MATCH_RULE = MatchRule("cosine", 0.5)
"""Nominal, not calibrated (same person when the standardised pixels correlate above 0.5);
`facegan recog eval` chooses its own threshold per fold."""


class PixelRecogniser(MatchRuleRecogniser):
    """Recogniser "pixel" v1: grey pixels at `size` x `size`, minus their mean, over their norm (cosine distance)."""

    name = "pixel"
    version = "1"
    match = MATCH_RULE

    def __init__(self, size: int = 32) -> None:
        if not isinstance(size, int) or size < 2:
            raise FaceganError(f"the pixel recogniser's size must be an integer >= 2, got {size!r}")
        self.size = size
        self.dim = size * size
        if size != 32:
            self.version = f"1-{size}px"


    def embed(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 (N, H, W, C) faces -> float32 (N, size*size): standardised grey pixels, L2-normalised."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise FaceganError(f"the pixel recogniser expects uint8 images, got {images.dtype}; convert with facegan.images.to_uint8")
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise FaceganError(f"the pixel recogniser expects (N, H, W, C) images with C 1 or 3, got shape {images.shape}")
        descriptors = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), max(batch_size, 256)):
            block = images[start : start + max(batch_size, 256)].astype(np.float32)
            grey = block.mean(-1) if block.shape[-1] == 1 else block @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (B, H, W)
            grey = _resize(grey, self.size).reshape(len(block), -1)
            grey -= grey.mean(1, keepdims=True)  # brightness and contrast do not make a person
            grey /= np.maximum(np.linalg.norm(grey, axis=1, keepdims=True), 1e-6)
            descriptors[start : start + len(block)] = grey
        return descriptors




def _resize(grey: np.ndarray, size: int) -> np.ndarray:
    """float (B, H, W) -> (B, size, size), bilinear (PIL), unchanged when already that size."""
    if grey.shape[1:] == (size, size):
        return grey
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(image, mode="F").resize((size, size), Image.BILINEAR)) for image in grey])
