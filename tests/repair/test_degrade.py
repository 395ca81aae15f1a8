"""Degradations: each damages the image by about the documented amount, deterministically, and refuses bad severities."""
from __future__ import annotations

import numpy as np
import pytest

from facegan.errors import FaceganError
from facegan.metrics.quality import psnr
from facegan.repair.degrade import DEGRADATIONS, default_severity, degrade, random_degradation


def _faces(count=4, size=32, channels=3, seed=0):
    # Smooth images with some edges, like faces: noise-free, so each degradation's effect is clear.
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = np.zeros((count, size, size, channels), np.uint8)
    for index in range(count):
        base = 128 + 60 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(5 * yy)
        base[size // 4 : size // 2, size // 4 : 3 * size // 4] = rng.uniform(20, 60)
        images[index] = np.clip(base, 0, 255).astype(np.uint8)[:, :, None]
    return images


def test_noise_has_the_asked_sigma_and_is_deterministic():
    images = np.full((3, 64, 64, 3), 128, np.uint8)
    noisy = degrade(images, "noise", seed=1)
    assert abs((noisy.astype(float) - 128).std() - 25) < 0.5
    assert np.array_equal(noisy, degrade(images, "noise", seed=1))
    assert np.array_equal(noisy[:2], degrade(images[:2], "noise", seed=1))  # batch independent
    assert not np.array_equal(noisy, degrade(images, "noise", seed=2))
    assert abs((degrade(images, "noise", seed=1, severity=10).astype(float) - 128).std() - 10) < 0.3


def test_blur_sigma_scales_with_resolution_and_smooths():
    assert default_severity("blur", 64) == 1.5 and default_severity("blur", 32) == 0.75
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    blurred = degrade(images, "blur")
    # Blur removes high frequencies: the mean |horizontal gradient| drops, the mean stays.
    def sharpness(x):
        return np.abs(np.diff(x.astype(float), axis=2)).mean()
    assert sharpness(blurred) < 0.5 * sharpness(images)
    assert abs(blurred.astype(float).mean() - images.astype(float).mean()) < 1.0
    assert sharpness(degrade(images, "blur", severity=2.0)) < sharpness(blurred)


def test_jpeg_quality_orders_the_damage_and_keeps_grey_grey():
    images = _faces(channels=3)
    low, high = degrade(images, "jpeg"), degrade(images, "jpeg", severity=90)
    assert psnr(images, low).mean() < psnr(images, high).mean() - 3
    grey = degrade(_faces(channels=1), "jpeg")
    assert grey.shape == (4, 32, 32, 1) and grey.dtype == np.uint8


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_every_kind_damages_but_keeps_shape(kind):
    images = _faces()
    out = degrade(images, kind, seed=0)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert 15 < psnr(images, out).mean() < 45


def test_random_degradation_varies_and_is_deterministic_by_rng():
    images = _faces(count=12)
    first = random_degradation(images, np.random.default_rng(3))
    assert np.array_equal(first, random_degradation(images, np.random.default_rng(3)))
    scores = psnr(images, first)
    assert np.all(np.isfinite(scores)) and scores.std() > 1.0


@pytest.mark.parametrize(
    "kind,severity,match",
    [("noise", 0, "noise sigma"), ("noise", 300, "noise sigma"), ("blur", -1, "blur sigma"), ("blur", 33, "blur sigma"),
     ("jpeg", 0, "JPEG quality"), ("jpeg", 10.5, "JPEG quality"), ("jpeg", 100, "JPEG quality"), ("noise", float("nan"), "number")],
)
def test_bad_severity_is_one_line(kind, severity, match):
    with pytest.raises(FaceganError, match=match):
        degrade(_faces(), kind, severity=severity)


def test_unknown_kind_and_float_images_are_refused():
    with pytest.raises(FaceganError, match="noise, blur, jpeg"):
        degrade(_faces(), "pixelate")
    with pytest.raises(FaceganError, match="uint8"):
        degrade(_faces().astype(np.float32), "noise")
