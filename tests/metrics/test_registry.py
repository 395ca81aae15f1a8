"""The extractor registry: each name once, and "face" is the dlib-resnet recogniser under its old cache identity."""
from __future__ import annotations

import numpy as np
import pytest

from facegan.metrics.features import available_extractors, extractor_identity, get_extractor, register_extractor, unregister_extractor
from tests.metrics.helpers import PROJECTION_NAME, ProjectionExtractor


def test_a_second_extractor_under_a_taken_name_is_refused(projection):
    with pytest.raises(ValueError, match=f"'{PROJECTION_NAME}' is already registered"):
        register_extractor(PROJECTION_NAME, lambda **options: ProjectionExtractor())
    with pytest.raises(ValueError, match="'face' is already registered"):
        register_extractor("face", lambda **options: ProjectionExtractor())
    get_extractor(PROJECTION_NAME)
    assert len(projection) == 1  # the first factory is still the one registered


def test_unregister_frees_the_name():
    register_extractor("test-free", lambda **options: ProjectionExtractor())
    unregister_extractor("test-free")
    assert "test-free" not in available_extractors()
    register_extractor("test-free", lambda **options: ProjectionExtractor())
    unregister_extractor("test-free")


def test_face_features_are_the_registered_recognisers_descriptors():
    _needs_dlib_weights()
    from facegan.faces.recognisers import get_recogniser

    extractor = get_extractor("face")
    # The cache key of every real-feature set computed before recognisers had a registry.
    assert extractor_identity(extractor) == {"name": "dlib-resnet-face", "version": "1", "dim": 128}
    chips = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 1), dtype=np.uint8)
    np.testing.assert_array_equal(extractor.features(chips, batch_size=2), get_recogniser("dlib-resnet").embed(chips, batch_size=2))


def _needs_dlib_weights() -> None:
    from facegan.errors import FaceganError
    from facegan.faces.align import dlib_model_path

    try:
        dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")
    except FaceganError as error:
        pytest.skip(str(error))
