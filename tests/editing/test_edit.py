"""Editing: strength 0 is the identity, scores move along the direction, conditioning holds others still."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facegan.editing.classifier import ClassifierSettings
from facegan.editing.directions import DirectionSettings, find_directions
from facegan.editing.edit import check_latents, edit, edit_strip, load_latents, measure_edit, strip_image
from facegan.errors import FaceganError
from facegan.faces.recognisers import get_recogniser
from tests.editing.helpers import PlantedClassifier, planted_dataset, planted_generator, tiny_export

STRENGTHS = [-3.0, -1.5, 0.0, 1.5, 3.0]


@pytest.fixture(scope="module")
def planted():
    generator, _, _ = planted_generator()
    directions = find_directions(generator, PlantedClassifier(), DirectionSettings(num_samples=600))
    return generator, directions


def test_strength_zero_is_the_original_image_exactly(planted):
    generator, directions = planted
    z = generator.z_for_seeds(range(6))
    images = edit(generator, z, directions.vector("Top_Bright"), [0.0, 2.0, 0.0])
    original = generator.synthesize(z)
    np.testing.assert_array_equal(images[:, 0], original)
    np.testing.assert_array_equal(images[:, 2], original)
    assert not np.array_equal(images[:, 1], original)


def test_strength_zero_is_exact_on_a_real_architecture(tmp_path):
    from facegan.models.export import load_generator

    generator = load_generator(tiny_export(tmp_path / "export"))
    z = generator.z_for_seeds(range(5))
    direction = np.random.default_rng(0).normal(size=generator.z_dim)
    images = edit(generator, z, direction / np.linalg.norm(direction), [-2.0, 0.0, 2.0])
    np.testing.assert_array_equal(images[:, 1], generator.synthesize(z))
    assert images.shape == (5, 3, 16, 16, 3)


def test_edit_moves_the_target_score_and_conditioning_holds_the_other(planted):
    generator, directions = planted
    classifier, recogniser = PlantedClassifier(), get_recogniser("pixel")
    z = generator.z_for_seeds(range(32))
    plain = measure_edit(edit(generator, z, directions.vector("Left_Red"), STRENGTHS), STRENGTHS, classifier, "Left_Red", recogniser)
    held = measure_edit(edit(generator, z, directions.conditioned("Left_Red", ["Top_Bright"]), STRENGTHS), STRENGTHS,
                        classifier, "Left_Red", recogniser)
    for result in (plain, held):
        assert result["summary"]["target_change_low_to_high"] > 0.5  # Left_Red goes from mostly off to mostly on
        assert result["per_strength"][2]["target_change"] == 0.0 and result["per_strength"][2]["identity_drift"] == 0.0
    top_plain = abs(plain["per_strength"][-1]["per_attribute_change"]["Top_Bright"])
    top_held = abs(held["per_strength"][-1]["per_attribute_change"]["Top_Bright"])
    assert top_plain > 0.2 and top_held < top_plain / 3  # the planted truths share a component; conditioning removes it
    assert held["summary"]["identity_drift_at_max"] > 0  # something changed, and the drift is measured


def test_strip_image_is_a_row_per_face_and_a_column_per_strength(planted):
    generator, directions = planted
    images = edit(generator, generator.z_for_seeds(range(3)), directions.vector("Top_Bright"), STRENGTHS)
    strip = strip_image(images)
    assert strip.shape == (3 * 18 + 2, 5 * 18 + 2, 3)
    np.testing.assert_array_equal(strip[2 + 18 : 2 + 18 + 16, 2 + 2 * 18 : 2 + 2 * 18 + 16], images[1, 2])


def test_latents_file_from_project_is_read_and_bad_ones_refused(tmp_path):
    good = np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32)
    np.save(tmp_path / "latents.npy", good)
    np.testing.assert_array_equal(load_latents(tmp_path / "latents.npy", 16).numpy(), good)
    np.save(tmp_path / "wide.npy", good[:, :8])
    with pytest.raises(FaceganError, match=r"shape \(N, 16\)"):
        load_latents(tmp_path / "wide.npy", 16)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(FaceganError, match="not a readable .npy"):
        load_latents(tmp_path / "junk.npy", 16)
    with pytest.raises(FaceganError, match="NaN"):
        check_latents(np.full((2, 16), np.nan, np.float32), 16)


def test_edit_strip_end_to_end_caches_and_reports(tmp_path):
    data = tmp_path / "data"
    planted_dataset(count=120).save(data)
    export = tiny_export(tmp_path / "export", dataset_path=data)
    settings = ClassifierSettings(steps=40, batch_size=32, width=8)
    result = edit_strip(export, "Top_Bright", STRENGTHS, seeds=[0, 1, 2], num_samples=200, recogniser="pixel",
                        condition_on=["Left_Red"], classifier_settings=settings)
    assert result.images.shape == (3, 5, 16, 16, 3)
    report = result.report
    assert report["measurements"]["per_strength"][2]["target_change"] == 0.0
    assert "unconditioned" in report and report["condition_on"] == ["Left_Red"]
    assert np.isclose(np.linalg.norm(result.direction), 1.0)
    cached = sorted(path.name for path in (tmp_path / "export" / "editing").iterdir())
    assert len(cached) == 2 and cached[0].startswith("classifier-") and cached[1].startswith("directions-")
    again = edit_strip(export, "Top_Bright", STRENGTHS, seeds=[0, 1, 2], num_samples=200, recogniser="pixel",
                       condition_on=["Left_Red"], classifier_settings=settings)
    np.testing.assert_array_equal(again.images, result.images)
    with pytest.raises(FaceganError, match="unknown attribute 'Smiling': .* has Top_Bright, Left_Red, Noise"):
        edit_strip(export, "Smiling", STRENGTHS, seeds=[0], recogniser=None, classifier_settings=settings)
    latents = torch.randn(2, 16).numpy()
    from_latents = edit_strip(export, "Top_Bright", [0.0], latents=latents, num_samples=200, recogniser=None, classifier_settings=settings)
    from facegan.models.export import load_generator

    np.testing.assert_array_equal(from_latents.images[:, 0], load_generator(export).synthesize(torch.from_numpy(latents)))


def test_classifier_notes_flag_attributes_at_chance():
    from facegan.editing.edit import classifier_notes

    holdout = {"Good": {"accuracy": 0.95, "majority_accuracy": 0.6, "balanced_accuracy": 0.94},
               "Rare": {"accuracy": 0.995, "majority_accuracy": 1.0, "balanced_accuracy": 0.995, "positive_rate": 0.0},
               "Coin": {"accuracy": 0.56, "majority_accuracy": 0.52, "balanced_accuracy": 0.55}}
    notes = classifier_notes(holdout, ["Good", "Rare", "Coin"])
    assert len(notes) == 2 and "all without Rare" in notes[0] and "for Coin" in notes[1]
