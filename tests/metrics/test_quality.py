"""PSNR, SSIM and L1 per image: values, parity with scikit-image, refusals."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from facegan.errors import FaceganError
from facegan.metrics.quality import image_quality, l1, psnr, ssim


def _pair(shape=(4, 16, 20, 3), seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    noise = rng.normal(0, 20, shape)
    b = np.clip(a + noise, 0, 255).astype(np.uint8)
    return a, b


@pytest.mark.parametrize("shape", [(4, 16, 20, 3), (3, 9, 7, 1), (2, 32, 32, 3)])
def test_ssim_matches_scikit_image_defaults(shape):
    a, b = _pair(shape)
    expected = [structural_similarity(x, y, channel_axis=-1, data_range=255) for x, y in zip(a, b)]
    np.testing.assert_allclose(ssim(a, b), expected, rtol=1e-10, atol=1e-12)


def test_psnr_matches_scikit_image_and_is_inf_when_equal():
    a, b = _pair()
    expected = [peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b)]
    np.testing.assert_allclose(psnr(a, b), expected, rtol=1e-12)
    assert np.all(np.isinf(psnr(a, a)))
    np.testing.assert_allclose(ssim(a, a), 1.0)


def test_l1_is_mean_absolute_difference_over_255():
    a = np.zeros((2, 8, 8, 3), np.uint8)
    b = a.copy()
    b[0] = 255
    b[1, :4] = 51  # half the pixels off by 51 -> 0.1
    np.testing.assert_allclose(l1(a, b), [1.0, 0.1])


def test_metrics_are_per_image_and_batch_independent():
    a, b = _pair((5, 12, 12, 3), seed=3)
    whole = image_quality(a, b)
    for name, values in whole.items():
        assert values.shape == (5,) and values.dtype == np.float64
        single = image_quality(a[2:3], b[2:3])[name]
        np.testing.assert_array_equal(values[2:3], single)


def test_refuses_mismatched_float_or_tiny_images():
    a, b = _pair((2, 8, 8, 3))
    with pytest.raises(FaceganError, match="one shape"):
        psnr(a, b[:1])
    with pytest.raises(FaceganError, match="uint8"):
        l1(a.astype(np.float32), b)
    with pytest.raises(FaceganError, match="at least 7x7"):
        ssim(a[:, :6, :6], b[:, :6, :6])
