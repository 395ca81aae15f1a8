"""InterFaceGAN directions on a planted generator whose attributes are known linear functions of z."""
from __future__ import annotations

import numpy as np
import pytest

from facegan.editing.classifier import ClassifierSettings, train_classifier
from facegan.editing.directions import (
    DirectionSettings, cached_directions, condition_direction, find_directions, load_directions, save_directions,
)
from facegan.errors import FaceganError
from tests.editing.helpers import PlantedClassifier, planted_dataset, planted_generator

SETTINGS = DirectionSettings(num_samples=600, seed=0)


@pytest.fixture(scope="module")
def planted():
    generator, u_top, u_left = planted_generator()
    return generator, u_top.numpy().astype(np.float64), u_left.numpy().astype(np.float64)


def test_directions_align_with_the_planted_ones(planted):
    generator, u_top, u_left = planted
    directions = find_directions(generator, PlantedClassifier(), SETTINGS)
    assert float(directions.vector("Top_Bright") @ u_top) > 0.95
    assert float(directions.vector("Left_Red") @ u_left) > 0.95
    assert directions.fit["Top_Bright"]["boundary_accuracy"] > 0.95
    with pytest.raises(FaceganError, match="no direction for 'Noise'"):
        directions.vector("Noise")  # the planted classifier gives every image the same Noise score


def test_directions_from_a_trained_classifier_align(planted):
    generator, u_top, u_left = planted
    classifier = train_classifier(planted_dataset(count=240), ClassifierSettings(steps=150, batch_size=32, width=8))
    directions = find_directions(generator, classifier, SETTINGS)
    assert float(directions.vector("Top_Bright") @ u_top) > 0.9
    assert float(directions.vector("Left_Red") @ u_left) > 0.9


def test_conditioning_removes_the_conditioned_component(planted):
    generator, u_top, u_left = planted
    directions = find_directions(generator, PlantedClassifier(), SETTINGS)
    top, left = directions.vector("Top_Bright"), directions.vector("Left_Red")
    assert abs(float(left @ top)) > 0.4  # the planted truths are correlated, so the raw direction moves Top_Bright too
    conditioned = directions.conditioned("Left_Red", ["Top_Bright"])
    assert abs(float(conditioned @ top)) < 1e-9 and np.isclose(np.linalg.norm(conditioned), 1.0)
    # It is the part of the true direction that Top_Bright does not share.
    truth = u_left - (u_left @ u_top) * u_top
    assert float(conditioned @ truth / np.linalg.norm(truth)) > 0.9


def test_condition_direction_matches_the_closed_form():
    rng = np.random.default_rng(0)
    primary, others = rng.normal(size=12), rng.normal(size=(3, 12))
    basis = others.T
    expected = primary - basis @ np.linalg.inv(basis.T @ basis) @ basis.T @ primary
    np.testing.assert_allclose(condition_direction(primary, list(others)), expected / np.linalg.norm(expected), atol=1e-12)
    with pytest.raises(FaceganError, match="inside the span"):
        condition_direction(others[0] + 2 * others[1], list(others))


def test_conditioning_on_the_edited_attribute_is_refused(planted):
    directions = find_directions(planted[0], PlantedClassifier(), SETTINGS)
    with pytest.raises(FaceganError, match="condition on the others only"):
        directions.conditioned("Top_Bright", ["Top_Bright"])


def test_directions_are_deterministic_and_cached(planted, tmp_path):
    generator = planted[0]
    first = find_directions(generator, PlantedClassifier(), SETTINGS)
    np.testing.assert_array_equal(find_directions(generator, PlantedClassifier(), SETTINGS).vectors, first.vectors)
    path = save_directions(tmp_path / "d.json", first, {})
    np.testing.assert_array_equal(load_directions(path, generator.z_dim).vectors, first.vectors)  # NaN rows survive too
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.safetensors").write_bytes(b"weights")
    found, cache = cached_directions(tmp_path / "editing", export, generator, PlantedClassifier(), SETTINGS)
    stamp = cache.stat().st_mtime_ns
    again, cache_again = cached_directions(tmp_path / "editing", export, generator, PlantedClassifier(), SETTINGS)
    assert cache_again == cache and cache.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.vectors, found.vectors)
    (export / "model.safetensors").write_bytes(b"other weights")  # another generator: its own directions file
    assert cached_directions(tmp_path / "editing", export, generator, PlantedClassifier(), SETTINGS)[1] != cache
