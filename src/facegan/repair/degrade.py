"""Synthetic damage for restoration: Gaussian noise, Gaussian blur, JPEG at low quality (uint8 NHWC in and out).

Defaults (the `severity` each kind takes when none is given), chosen to hurt dlib verification on
small faces while staying inside the range restoration papers use:
  noise  sigma 25 / 255 of additive Gaussian noise (the usual "sigma 25" denoising benchmark level)
  blur   Gaussian sigma 1.5 px at 64 px, scaled with the side (0.75 at 32, 3.0 at 128), so the same
         fraction of the face is smeared at every resolution
  jpeg   quality 10 with Pillow's default 4:2:0 chroma subsampling (blocking and colour bleeding)
Noise draws from np.random.default_rng([seed, index]) per image: deterministic and independent of
the batch. `random_degradation` draws kind and severity per image for training.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from facegan.errors import FaceganError

DEGRADATIONS = ("noise", "blur", "jpeg")
DEFAULT_NOISE_SIGMA = 25.0
BLUR_SIGMA_AT_64 = 1.5
DEFAULT_JPEG_QUALITY = 10
# Training draws severities from these ranges (blur as a multiple of the default sigma).
TRAINING_NOISE_SIGMA = (5.0, 50.0)
TRAINING_BLUR_FACTOR = (0.5, 2.0)
TRAINING_JPEG_QUALITY = (5, 40)


def default_severity(kind: str, size: int) -> float:
    """The severity `degrade` uses for `kind` on `size` px images when none is given."""
    check_kind(kind)
    if kind == "noise":
        return DEFAULT_NOISE_SIGMA
    if kind == "blur":
        return BLUR_SIGMA_AT_64 * size / 64
    return float(DEFAULT_JPEG_QUALITY)


def check_kind(kind: str) -> str:
    if kind not in DEGRADATIONS:
        raise FaceganError(f"unknown degradation {kind!r}; use one of {', '.join(DEGRADATIONS)}")
    return kind


def _check_severity(kind: str, severity: float, size: int) -> float:
    if isinstance(severity, bool) or not isinstance(severity, (int, float)) or not np.isfinite(severity):
        raise FaceganError(f"the {kind} severity must be a number, got {severity!r}")
    if kind == "noise" and not 0 < severity <= 255:
        raise FaceganError(f"the noise sigma is in pixel levels, 0 < sigma <= 255 (e.g. 25); got {severity}")
    if kind == "blur" and not 0 < severity <= size:
        raise FaceganError(f"the blur sigma is in pixels, 0 < sigma <= the image side {size}; got {severity}")
    if kind == "jpeg" and not (1 <= severity <= 95 and float(severity).is_integer()):
        raise FaceganError(f"the JPEG quality is a whole number from 1 to 95 (e.g. 10); got {severity}")
    return float(severity)


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
        raise FaceganError(f"degradations take uint8 images (N, H, W, 1 or 3); got {images.dtype} {images.shape}")
    return images


def _noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = image.astype(np.float64) + rng.normal(0.0, sigma, image.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    # Blur H and W only; reflect at the border, as photo filters do. truncate=4 sigma (scipy's default).
    blurred = gaussian_filter(image.astype(np.float64), sigma=(sigma, sigma, 0), mode="reflect")
    return np.clip(np.rint(blurred), 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    grey = image.shape[2] == 1
    pil_image = Image.fromarray(np.ascontiguousarray(image[:, :, 0] if grey else image))
    buffer = io.BytesIO()
    pil_image.save(buffer, format="JPEG", quality=int(quality))
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L" if grey else "RGB"), dtype=np.uint8)
    return decoded[:, :, None] if grey else decoded


def degrade_one(image: np.ndarray, kind: str, severity: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """One uint8 HWC image damaged by `kind` at `severity` (noise needs `rng`)."""
    if kind == "noise":
        return _noise(image, severity, rng if rng is not None else np.random.default_rng(0))
    if kind == "blur":
        return _blur(image, severity)
    if kind == "jpeg":
        return _jpeg(image, int(severity))
    check_kind(kind)
    raise AssertionError("unreachable")


def degrade(images: np.ndarray, kind: str, seed: int = 0, severity: float | None = None) -> np.ndarray:
    """Damage uint8 NHWC images with `kind` ("noise", "blur", "jpeg") at `severity` (see the module's defaults)."""
    check_kind(kind)
    images = _check_images(images)
    size = images.shape[1]
    severity = default_severity(kind, size) if severity is None else _check_severity(kind, severity, size)
    out = np.empty_like(images)
    for index, image in enumerate(images):
        out[index] = degrade_one(image, kind, severity, np.random.default_rng([seed, index]) if kind == "noise" else None)
    return out


# The training ranges by kind: noise sigma, blur as a multiple of the default sigma, JPEG quality (both ends included).
TRAINING_RANGES: dict[str, tuple[float, float]] = {"noise": TRAINING_NOISE_SIGMA, "blur": TRAINING_BLUR_FACTOR, "jpeg": TRAINING_JPEG_QUALITY}


def random_severity(kind: str, size: int, rng: np.random.Generator, ranges: Mapping[str, Sequence[float]] | None = None) -> float:
    """A severity drawn from the training range of `kind` (`ranges` overrides TRAINING_RANGES per kind)."""
    check_kind(kind)
    low, high = (ranges or {}).get(kind, TRAINING_RANGES[kind])
    if kind == "noise":
        return float(rng.uniform(low, high))
    if kind == "blur":
        return float(rng.uniform(low, high)) * default_severity("blur", size)
    return float(rng.integers(int(low), int(high) + 1))


def random_degradation(images: np.ndarray, rng: np.random.Generator, kinds: tuple[str, ...] = DEGRADATIONS,
                       ranges: Mapping[str, Sequence[float]] | None = None, weights: Sequence[float] | None = None) -> np.ndarray:
    """Training damage: each image gets a kind drawn from `kinds` (uniformly, or in proportion to `weights`) and a
    severity from that kind's training range."""
    images = _check_images(images)
    for kind in kinds:
        check_kind(kind)
    if not kinds:
        raise FaceganError("random degradation needs at least one kind")
    if weights is not None and (len(weights) != len(kinds) or min(weights) < 0 or sum(weights) <= 0):
        raise FaceganError(f"degradation weights must be one non-negative number per kind ({len(kinds)}), not all 0; got {list(weights)}")
    shares = None if weights is None else np.asarray(weights, dtype=np.float64) / float(sum(weights))
    out = np.empty_like(images)
    for index, image in enumerate(images):
        # Uniform draws keep their original RNG call, so runs without weights are drawn exactly as before.
        kind = kinds[int(rng.integers(len(kinds)))] if shares is None else kinds[int(rng.choice(len(kinds), p=shares))]
        out[index] = degrade_one(image, kind, random_severity(kind, images.shape[1], rng, ranges), rng)
    return out
