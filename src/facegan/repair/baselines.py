"""Classical baselines no one here wrote: OpenCV inpainting (Telea, Navier-Stokes) and restoration (NLM, unsharp).

Every function takes and returns uint8 NHWC (1 or 3 channels). Inpainters take bool masks (N, H, W),
True = hole, and return known pixels exactly (composited), so they compare on the same footing as
the repair net. `INPAINTERS` and `RESTORERS` map a method name to a plain callable:
    INPAINTERS[name](images, masks) -> images        RESTORERS[name](images) -> images
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from facegan.errors import FaceganError

INPAINT_METHODS = ("telea", "ns")
DEFAULT_INPAINT_RADIUS = 3  # OpenCV's sample uses 3 px: the neighbourhood each filled pixel looks at
# Non-local means (Buades et al.) with OpenCV's documented defaults: filter strength h = 10 for
# luma and colour, 7x7 patches, 21x21 search window.
NLM_STRENGTH = 10.0
NLM_TEMPLATE_WINDOW = 7
NLM_SEARCH_WINDOW = 21
UNSHARP_SIGMA_AT_64 = 1.5  # the blur degradation's default sigma (repair.degrade), so it undoes that scale
UNSHARP_AMOUNT = 1.0


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
        raise FaceganError(f"the OpenCV baselines take uint8 images (N, H, W, 1 or 3); got {images.dtype} {images.shape}")
    return images


def _check_masks(masks: np.ndarray, images: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.dtype != np.bool_ or masks.shape != images.shape[:3]:
        raise FaceganError(f"masks must be bool {images.shape[:3]} (True = hole) for these images; got {masks.dtype} {masks.shape}")
    return masks


def composite(repaired: np.ndarray, originals: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """`repaired` inside the holes, `originals` everywhere else (known pixels exactly)."""
    return np.where(masks[..., None], repaired, originals)


def inpaint(images: np.ndarray, masks: np.ndarray, method: str = "telea", radius: int = DEFAULT_INPAINT_RADIUS) -> np.ndarray:
    """Fill the holes with OpenCV's inpainting: Telea's fast marching ("telea") or Navier-Stokes ("ns")."""
    import cv2

    images = _check_images(images)
    masks = _check_masks(masks, images)
    if method not in INPAINT_METHODS:
        raise FaceganError(f"unknown OpenCV inpainting method {method!r}; use one of {', '.join(INPAINT_METHODS)}")
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise FaceganError(f"the inpainting radius is a whole number of pixels >= 1, got {radius!r}")
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    out = np.empty_like(images)
    for index, (image, mask) in enumerate(zip(images, masks)):
        source = np.ascontiguousarray(image[:, :, 0] if image.shape[2] == 1 else image)
        filled = cv2.inpaint(source, mask.astype(np.uint8) * 255, radius, flag)
        out[index] = filled.reshape(image.shape)
    return composite(out, images, masks)


def inpaint_telea(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    return inpaint(images, masks, "telea")


def inpaint_ns(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    return inpaint(images, masks, "ns")


def denoise_nlm(images: np.ndarray, strength: float = NLM_STRENGTH) -> np.ndarray:
    """OpenCV's non-local-means denoising (fastNlMeansDenoisingColored; the grey version for 1 channel)."""
    import cv2

    images = _check_images(images)
    out = np.empty_like(images)
    for index, image in enumerate(images):
        if image.shape[2] == 1:
            out[index, :, :, 0] = cv2.fastNlMeansDenoising(np.ascontiguousarray(image[:, :, 0]), None, strength, NLM_TEMPLATE_WINDOW, NLM_SEARCH_WINDOW)
        else:
            out[index] = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(image), None, strength, strength, NLM_TEMPLATE_WINDOW, NLM_SEARCH_WINDOW)
    return out


def unsharp(images: np.ndarray, sigma: float | None = None, amount: float = UNSHARP_AMOUNT) -> np.ndarray:
    """Plain unsharp masking: image + amount x (image - Gaussian blur(image, sigma)); sigma defaults to 1.5 px at 64 px, scaled."""
    from scipy.ndimage import gaussian_filter

    images = _check_images(images)
    if sigma is None:
        sigma = UNSHARP_SIGMA_AT_64 * images.shape[1] / 64
    if not (sigma > 0 and amount >= 0):
        raise FaceganError(f"unsharp masking needs sigma > 0 and amount >= 0, got {sigma} and {amount}")
    source = images.astype(np.float64)
    blurred = gaussian_filter(source, sigma=(0, sigma, sigma, 0), mode="reflect")
    return np.clip(np.rint(source + amount * (source - blurred)), 0, 255).astype(np.uint8)


Inpainter = Callable[[np.ndarray, np.ndarray], np.ndarray]
Restorer = Callable[[np.ndarray], np.ndarray]

INPAINTERS: dict[str, Inpainter] = {"telea": inpaint_telea, "ns": inpaint_ns}
RESTORERS: dict[str, Restorer] = {"opencv-nlm": denoise_nlm, "unsharp": unsharp}
