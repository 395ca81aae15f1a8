"""Face rate: dlib's HOG detector on upsampled images; the built-in real faces mostly pass, noise never."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dlib")
skimage_data = pytest.importorskip("skimage.data")

from facegan.errors import FaceganError  # noqa: E402
from facegan.faces.detection import MIN_SIDE, FaceDetector, face_rate, prepare_for_detector  # noqa: E402


@pytest.fixture(scope="module")
def lfw_faces() -> np.ndarray:
    """The 100 built-in LFW faces as they come: uint8 (100, 25, 25, 1)."""
    return (skimage_data.lfw_subset()[:100] * 255).round().astype(np.uint8)[..., None]


def test_builtin_real_faces_are_found(lfw_faces):
    # Measured 0.91 with the chosen protocol (shorter side 100 px, upsample_num_times 0).
    assert face_rate(lfw_faces) == pytest.approx(0.91, abs=0.03)


def test_noise_and_flat_images_have_no_faces():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (40, 25, 25, 1), dtype=np.uint8)
    flat = np.full((10, 32, 32, 3), 128, dtype=np.uint8)
    assert face_rate(noise) == 0.0 and face_rate(flat) == 0.0


def test_thread_pool_gives_the_serial_answer(lfw_faces):
    with FaceDetector(num_threads=1) as serial, FaceDetector(num_threads=2) as pooled:
        expected = serial.detect(lfw_faces)
        assert np.array_equal(pooled.detect(lfw_faces), expected)
        assert np.array_equal(pooled.detect(lfw_faces[::-1]), expected[::-1])  # the pool is reused


def test_prepare_upsamples_small_images_and_replicates_gray():
    assert prepare_for_detector(np.zeros((16, 16, 1), np.uint8)).shape == (MIN_SIDE, MIN_SIDE, 3)
    assert prepare_for_detector(np.zeros((20, 40), np.uint8)).shape == (MIN_SIDE, 2 * MIN_SIDE, 3)
    large = np.zeros((150, 120, 3), np.uint8)
    assert prepare_for_detector(large).shape == (150, 120, 3)
    with pytest.raises(FaceganError, match="uint8"):
        prepare_for_detector(np.zeros((16, 16), np.float32))
    with pytest.raises(FaceganError, match="at least one image"):
        face_rate(np.zeros((0, 16, 16, 1), np.uint8))
