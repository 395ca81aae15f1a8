"""OpenCV contrib's LBPH face recogniser as a facegan recogniser: a classical, weight-free baseline.

`cv2.face.LBPHFaceRecognizer` (Ahonen et al. 2006) describes a grey face by local binary patterns
(radius 1, 8 neighbours: 256 codes) counted in an 8 x 8 grid of cells, each cell's histogram
normalised to sum 1, and compares two faces with the chi-square distance
`cv2.compareHist(..., HISTCMP_CHISQR_ALT)`. Here the descriptor *is* OpenCV's own spatial histogram
(read back with `getHistograms()` after `train`), so the distance between two faces is exactly the
confidence `predict` reports; tests check that parity. Registered as "lbph". It knows nothing of
identity beyond texture, which makes it the weak, independent yardstick a learned recogniser must beat.
"""
from __future__ import annotations

import numpy as np

from facegan.errors import FaceganError
from facegan.faces.match import MatchRule
from facegan.faces.recognisers import MatchRuleRecogniser

__all__ = ["LBPHRecogniser", "MATCH_RULE"]

MATCH_RULE = MatchRule("chi-square", 130.0)
"""Not calibrated on labelled faces (OpenCV ships no threshold): a nominal operating point between the
median distances of 32 px LFW faces to themselves shifted by a pixel (66) and to other faces (206). `facegan recog eval`
chooses its own threshold per fold and does not use it."""


def _grey(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W[, C]) -> uint8 (N, H, W) grey with OpenCV's RGB weights (what LBPH would be given)."""
    import cv2

    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise FaceganError(f"the LBPH recogniser expects uint8 images, got {images.dtype}; convert with facegan.images.to_uint8")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim == 4 and images.shape[-1] == 3:
        return np.stack([cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY) for image in images])
    if images.ndim != 3:
        raise FaceganError(f"the LBPH recogniser expects (N, H, W, C) images with C 1 or 3, got shape {images.shape}")
    return np.ascontiguousarray(images)


class LBPHRecogniser(MatchRuleRecogniser):
    """Recogniser "lbph" v1: OpenCV's LBPH spatial histograms (radius 1, 8 neighbours, 8 x 8 grid), chi-square distance."""

    name = "lbph"
    version = "1"
    match = MATCH_RULE

    def __init__(self, radius: int = 1, neighbors: int = 8, grid_x: int = 8, grid_y: int = 8) -> None:
        try:
            import cv2

            cv2.face.LBPHFaceRecognizer_create  # noqa: B018 - only the contrib build has cv2.face
        except (ImportError, AttributeError):
            raise FaceganError(
                "the lbph recogniser needs OpenCV's contrib modules (cv2.face); install opencv-contrib-python-headless"
            ) from None
        self.options = (radius, neighbors, grid_x, grid_y)
        self.dim = grid_x * grid_y * 2**neighbors
        if (radius, neighbors, grid_x, grid_y) != (1, 8, 8, 8):
            self.version = f"1-r{radius}-n{neighbors}-g{grid_x}x{grid_y}"  # other options, other descriptor space


    def create_opencv(self):
        """A fresh `cv2.face.LBPHFaceRecognizer` with this recogniser's options (the parity test uses it)."""
        import cv2

        radius, neighbors, grid_x, grid_y = self.options
        return cv2.face.LBPHFaceRecognizer_create(radius=radius, neighbors=neighbors, grid_x=grid_x, grid_y=grid_y)

    def embed(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 (N, H, W, C) faces -> float32 (N, dim) LBPH spatial histograms (each of 64 cells sums to 1)."""
        grey = _grey(images)
        smallest = 2 * self.options[0] + 1  # one full LBP neighbourhood; OpenCV asserts (a C++ traceback) below it
        if len(grey) and min(grey.shape[1:]) < smallest:
            raise FaceganError(f"the LBPH recogniser needs images of at least {smallest}x{smallest} px, got {grey.shape[2]}x{grey.shape[1]}; "
                               "give aligned face chips (`facegan data prepare --align dlib`)")
        descriptors = np.empty((len(grey), self.dim), dtype=np.float32)
        step = max(batch_size, 512)  # train() on a block: one C++ call for many faces
        for start in range(0, len(grey), step):
            block = list(grey[start : start + step])
            model = self.create_opencv()
            model.train(block, np.arange(len(block), dtype=np.int32))  # one label per face: only the histograms are wanted
            descriptors[start : start + len(block)] = np.concatenate(model.getHistograms()).reshape(len(block), self.dim)
        return descriptors


