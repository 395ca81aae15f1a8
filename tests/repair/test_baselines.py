"""OpenCV baselines: they use the very masks given (only hole pixels change; hole contents are ignored), and restore damage."""
from __future__ import annotations

import numpy as np
import pytest

from facegan.errors import FaceganError
from facegan.metrics.quality import psnr
from facegan.repair.baselines import INPAINTERS, RESTORERS, denoise_nlm, inpaint, unsharp
from facegan.repair.degrade import degrade
from facegan.repair.masks import make_masks


def _smooth_faces(count=3, size=32, channels=3):
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = np.zeros((count, size, size, channels), np.uint8)
    for index in range(count):
        images[index] = np.clip(128 + 70 * np.sin(3 * xx + index) * np.cos(2 * yy), 0, 255).astype(np.uint8)[:, :, None]
    return images


@pytest.mark.parametrize("method", sorted(INPAINTERS))
@pytest.mark.parametrize("channels", [1, 3])
def test_inpainters_use_exactly_the_masks_given(method, channels):
    images = _smooth_faces(channels=channels)
    masks = make_masks(3, 32, "box", 0.2, seed=0)
    out = INPAINTERS[method](images, masks)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert np.array_equal(out[~masks], images[~masks])  # known pixels exact
    # Hole contents are ignored: garbage under the mask gives the same result.
    damaged = images.copy()
    damaged[masks] = 0
    assert np.array_equal(INPAINTERS[method](damaged, masks), out)
    # Another mask changes the result, and only inside the union of the two holes.
    other = make_masks(3, 32, "box", 0.2, seed=1)
    moved = INPAINTERS[method](damaged, other)
    assert not np.array_equal(moved, out)
    assert np.array_equal(moved[~(masks | other)], out[~(masks | other)])
    # On smooth images the fill is far closer to the truth than the black hole was.
    assert np.all(psnr(images, out) > psnr(images, damaged) + 10)


def test_inpaint_refuses_mismatched_masks_and_methods():
    images = _smooth_faces()
    with pytest.raises(FaceganError, match="masks must be bool"):
        inpaint(images, np.zeros((3, 16, 16), bool))
    with pytest.raises(FaceganError, match="masks must be bool"):
        inpaint(images, np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(FaceganError, match="telea, ns"):
        inpaint(images, np.zeros((3, 32, 32), bool), method="fmm")


@pytest.mark.parametrize("channels", [1, 3])
def test_nlm_removes_most_noise(channels):
    images = _smooth_faces(channels=channels)
    noisy = degrade(images, "noise", seed=0, severity=15)
    assert np.all(psnr(images, denoise_nlm(noisy)) > psnr(images, noisy) + 3)


def test_unsharp_sharpens_a_blurred_edge():
    images = np.zeros((1, 32, 32, 3), np.uint8)
    images[:, :, 16:] = 200
    blurred = degrade(images, "blur", severity=1.0)
    sharpened = unsharp(blurred, sigma=1.0)
    assert np.abs(np.diff(sharpened.astype(float), axis=2)).max() > np.abs(np.diff(blurred.astype(float), axis=2)).max()
    assert set(RESTORERS) == {"opencv-nlm", "unsharp"}
    assert np.array_equal(unsharp(images, amount=0.0), images)
