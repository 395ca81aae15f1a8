"""The recogniser registry and the match rule: names are registered once, dlib-resnet matches by Euclidean < 0.6."""
from __future__ import annotations

import numpy as np
import pytest

from facegan.errors import FaceganError
from facegan.faces.match import MatchRule, pair_distances
from facegan.faces.recognisers import available_recognisers, get_recogniser, register_recogniser, unregister_recogniser


class _Tiny:
    name, version, dim = "tiny", "1", 2
    match = MatchRule("euclidean", 1.0)
    threshold = 1.0

    def embed(self, images, batch_size=64):
        return np.asarray(images, dtype=np.float32).reshape(len(images), -1)[:, :2]

    def distance(self, first, second):
        return self.match.distance(first, second)

    def same_person(self, first, second):
        return self.match.same_person(first, second)


def test_dlib_resnet_is_registered_and_a_duplicate_name_is_refused():
    assert "dlib-resnet" in available_recognisers()
    with pytest.raises(ValueError, match="'dlib-resnet' is already registered"):
        register_recogniser("dlib-resnet", lambda **options: _Tiny())
    register_recogniser("test-tiny", lambda **options: _Tiny())
    try:
        assert isinstance(get_recogniser("test-tiny"), _Tiny)
        with pytest.raises(ValueError, match="already registered"):
            register_recogniser("test-tiny", lambda **options: _Tiny())
    finally:
        unregister_recogniser("test-tiny")
    assert "test-tiny" not in available_recognisers()


def test_unknown_recogniser_is_one_line_listing_the_choices():
    with pytest.raises(FaceganError, match="unknown face recogniser 'nope'; choose one of: .*dlib-resnet"):
        get_recogniser("nope")


def test_match_rule_is_a_distance_below_the_threshold():
    rule = MatchRule("euclidean", 0.6)
    first = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    second = np.array([[0.3, 0.4], [0.6, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(rule.distance(first, second), [0.5, 0.6, 0.0])
    assert rule.same_person(first, second).tolist() == [True, False, True]  # 0.6 itself is not a match
    assert pair_distances(np.array([1.0, 0.0]), np.array([0.0, 2.0]), "cosine") == pytest.approx(1.0)
    with pytest.raises(ValueError):
        MatchRule("euclidean", float("nan"))
    with pytest.raises(FaceganError, match="one shape"):
        rule.distance(first, second[:2])


def test_dlib_resnet_recogniser_follows_the_protocol_with_dlibs_rule():
    _needs_dlib_weights()
    from facegan.faces.recognisers import Recogniser

    recogniser = get_recogniser("dlib-resnet")
    assert isinstance(recogniser, Recogniser)
    assert (recogniser.name, recogniser.version, recogniser.dim) == ("dlib-resnet", "1", 128)
    assert recogniser.match == MatchRule("euclidean", 0.6) and recogniser.threshold == 0.6
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)
    descriptors = recogniser.embed(chips)  # (3, 128)
    assert descriptors.dtype == np.float32 and descriptors.shape == (3, 128)
    distances = recogniser.distance(descriptors[:2], descriptors[1:])
    np.testing.assert_allclose(distances, np.linalg.norm(descriptors[:2].astype(np.float64) - descriptors[1:], axis=1))
    assert recogniser.same_person(descriptors, descriptors).all()
    assert recogniser.same_person(descriptors[:2], descriptors[1:]).tolist() == (distances < 0.6).tolist()


def _needs_dlib_weights() -> None:
    from facegan.errors import FaceganError
    from facegan.faces.align import dlib_model_path

    try:
        dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")
    except FaceganError as error:
        pytest.skip(str(error))
