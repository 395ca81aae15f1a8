"""Per-image reconstruction quality: PSNR, SSIM and L1 between two uint8 NHWC batches.

Used to score repaired, restored and projected faces against their originals. Each function returns
one float64 per image (N,), so callers can report means per band and keep per-image values in JSON.
SSIM follows scikit-image's `structural_similarity(a, b, channel_axis=-1, data_range=255)` with its
defaults (7x7 uniform window, K1 0.01, K2 0.03, sample covariance, reflect padding, the border of
half a window left out of the mean, channels averaged), vectorised over the batch.
"""
from __future__ import annotations

import numpy as np

from facegan.errors import FaceganError

DATA_RANGE = 255.0
SSIM_WINDOW = 7  # scikit-image's default win_size (gaussian_weights=False)
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check two uint8 batches match (HWC is taken as a batch of one); return them as float64 NHWC."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim == 3:
        a = a[None]
    if b.ndim == 3:
        b = b[None]
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise FaceganError(f"quality metrics compare uint8 images; got {a.dtype} and {b.dtype}: convert with facegan.images.to_uint8 first")
    if a.ndim != 4 or a.shape != b.shape:
        raise FaceganError(f"quality metrics need two image batches of one shape (N, H, W, C); got {a.shape} and {b.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio in dB per image (data range 255); inf where the two images are equal."""
    a, b = _pair(a, b)
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(DATA_RANGE**2 / mse)


def l1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference per image, as a fraction of the data range (0 = equal, 1 = black vs white)."""
    a, b = _pair(a, b)
    return np.abs(a - b).reshape(len(a), -1).mean(axis=1) / DATA_RANGE


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Structural similarity per image, as scikit-image's defaults compute it (channels averaged)."""
    from scipy.ndimage import uniform_filter

    a, b = _pair(a, b)
    if min(a.shape[1], a.shape[2]) < SSIM_WINDOW:
        raise FaceganError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels; got {a.shape[2]}x{a.shape[1]}")
    # Filter over H and W only; size 1 along the batch and channel axes keeps images and channels apart.
    size = (1, SSIM_WINDOW, SSIM_WINDOW, 1)

    def mean(x: np.ndarray) -> np.ndarray:
        return uniform_filter(x, size=size, mode="reflect")

    num_points = SSIM_WINDOW * SSIM_WINDOW
    covariance_norm = num_points / (num_points - 1)  # sample covariance, as scikit-image
    mean_a, mean_b = mean(a), mean(b)
    var_a = covariance_norm * (mean(a * a) - mean_a * mean_a)
    var_b = covariance_norm * (mean(b * b) - mean_b * mean_b)
    cov_ab = covariance_norm * (mean(a * b) - mean_a * mean_b)
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    numerator = (2 * mean_a * mean_b + c1) * (2 * cov_ab + c2)
    denominator = (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
    ssim_map = numerator / denominator  # (N, H, W, C)
    pad = (SSIM_WINDOW - 1) // 2
    cropped = ssim_map[:, pad : ssim_map.shape[1] - pad, pad : ssim_map.shape[2] - pad, :]
    return cropped.mean(axis=(1, 2, 3))


def image_quality(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """PSNR, SSIM and L1 per image, keyed by name."""
    return {"psnr": psnr(a, b), "ssim": ssim(a, b), "l1": l1(a, b)}
