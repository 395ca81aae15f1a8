"""The weight-free baseline recognisers: "lbph" (OpenCV's LBPH, parity with its own predict) and "pixel"."""
from __future__ import annotations

import numpy as np
import pytest

from facegan.errors import FaceganError
from facegan.faces.match import pair_distances
from facegan.faces.recognisers import Recogniser, available_recognisers, get_recogniser


def _faces(size: int = 32, count: int = 40) -> np.ndarray:
    from PIL import Image
    from skimage import data

    faces = (data.lfw_subset()[:count] * 255).round().astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(face).resize((size, size), Image.BICUBIC)) for face in faces])[..., None]


def test_baselines_and_the_dlib_alias_are_registered():
    names = available_recognisers()
    assert {"dlib", "dlib-resnet", "lbph", "pixel"} <= set(names)
    from facegan.faces import recognisers

    assert recognisers._REGISTRY.get("dlib") is recognisers._REGISTRY.get("dlib-resnet")


def test_lbph_distances_are_opencvs_own_predict_confidence():
    import cv2

    faces = _faces()
    gallery, queries = faces[:30, ..., 0], faces[30:, ..., 0]
    lbph = get_recogniser("lbph")
    assert isinstance(lbph, Recogniser) and (lbph.dim, lbph.match.metric) == (16384, "chi-square")
    opencv = cv2.face.LBPHFaceRecognizer_create()
    opencv.train(list(gallery), np.arange(30, dtype=np.int32))
    gallery_descriptors, query_descriptors = lbph.embed(faces[:30]), lbph.embed(faces[30:])
    for query, descriptor in zip(queries, query_descriptors):
        label, confidence = opencv.predict(query)
        distances = lbph.distance(gallery_descriptors, np.repeat(descriptor[None], 30, axis=0))
        assert int(np.argmin(distances)) == label
        assert distances.min() == pytest.approx(confidence, rel=1e-6)


def test_lbph_descriptor_is_opencvs_spatial_histogram_whatever_the_batching():
    faces = _faces(count=20)
    lbph = get_recogniser("lbph")
    whole = lbph.embed(faces)
    split = np.concatenate([lbph.embed(faces[:7]), lbph.embed(faces[7:])])
    np.testing.assert_array_equal(whole, split)
    np.testing.assert_allclose(whole.reshape(20, 64, 256).sum(-1), 1.0, atol=1e-5)  # each cell normalised
    colour = np.repeat(faces, 3, axis=-1)  # grey as RGB converts back to the same grey
    np.testing.assert_array_equal(lbph.embed(colour), whole)


def test_chi_square_matches_cv2_compare_hist():
    import cv2

    generator = np.random.default_rng(0)
    first, second = generator.random((300, 50)).astype(np.float32), generator.random((300, 50)).astype(np.float32)
    first[:, :5] = second[:, :5] = 0  # empty bins in both: skipped, not 0/0
    expected = [cv2.compareHist(a, b, cv2.HISTCMP_CHISQR_ALT) for a, b in zip(first, second)]
    np.testing.assert_allclose(pair_distances(first, second, "chi-square"), expected, rtol=1e-6)


def test_pixel_is_brightness_and_contrast_invariant_cosine():
    faces = _faces(count=10)
    pixel = get_recogniser("pixel")
    descriptors = pixel.embed(faces)
    assert descriptors.shape == (10, 1024) and descriptors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1.0, atol=1e-5)
    dimmer = (faces.astype(np.float32) * 0.5 + 20).round().astype(np.uint8)
    assert pixel.distance(descriptors, pixel.embed(dimmer)).max() < 1e-3
    assert np.median(pixel.distance(descriptors, np.roll(descriptors, 1, axis=0))) > 0.3  # different faces are far
    assert pixel.embed(_faces(size=64, count=10)).shape == (10, 1024)  # any input size, one descriptor space


@pytest.mark.parametrize("name", ["lbph", "pixel"])
def test_baselines_refuse_float_images_in_one_line(name):
    with pytest.raises(FaceganError, match="expects uint8 images"):
        get_recogniser(name).embed(np.zeros((2, 8, 8, 1), dtype=np.float32))
