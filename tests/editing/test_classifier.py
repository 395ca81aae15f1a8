"""The attribute classifier: learns planted attributes, reports honest held-out accuracy, saves and loads."""
from __future__ import annotations

import numpy as np
import pytest

from facegan.editing.classifier import ClassifierSettings, cached_classifier, load_classifier, train_classifier
from facegan.errors import FaceganError
from tests.editing.helpers import NAMES, planted_dataset

FAST = ClassifierSettings(steps=120, batch_size=32, width=8, seed=0)


@pytest.fixture(scope="module")
def classifier():
    return train_classifier(planted_dataset(), FAST)


def test_classifier_learns_visible_attributes_and_not_the_invisible_one(classifier):
    holdout = classifier.info["holdout"]
    assert classifier.attribute_names == NAMES
    assert holdout["Top_Bright"]["accuracy"] > 0.95 and holdout["Left_Red"]["accuracy"] > 0.95
    # Nothing in the pixels shows the coin flip: held-out accuracy stays near chance (the split is by identity).
    assert holdout["Noise"]["balanced_accuracy"] < 0.75
    assert classifier.info["split"]["by_identity"] is True


def test_classifier_scores_follow_the_pixels(classifier):
    dataset = planted_dataset(count=40, seed=5)
    scores = classifier.scores(dataset.images)
    assert scores.shape == (40, 3) and scores.dtype == np.float32
    truth = dataset.attributes[:, 0] > 0
    assert ((scores[:, 0] > 0.5) == truth).mean() > 0.9
    # Other sizes are resized to the classifier's own: a 32 px copy is scored like the 16 px original.
    big = np.repeat(np.repeat(dataset.images, 2, axis=1), 2, axis=2)
    assert ((classifier.scores(big)[:, 0] > 0.5) == truth).mean() > 0.9


def test_classifier_is_deterministic_and_round_trips(classifier, tmp_path):
    again = train_classifier(planted_dataset(), FAST)
    images = planted_dataset(count=20, seed=3).images
    np.testing.assert_array_equal(again.logits(images), classifier.logits(images))
    assert again.key == classifier.key
    loaded = load_classifier(classifier.save(tmp_path / "c"))
    np.testing.assert_array_equal(loaded.logits(images), classifier.logits(images))
    assert loaded.accuracy == classifier.accuracy


def test_cached_classifier_trains_once(tmp_path):
    first = cached_classifier(tmp_path, planted_dataset(), FAST)
    folders = list(tmp_path.iterdir())
    assert len(folders) == 1
    (folders[0] / "model.safetensors").touch()  # a load would see the same file; prove no retraining happens
    stamp = (folders[0] / "model.safetensors").stat().st_mtime_ns
    second = cached_classifier(tmp_path, planted_dataset(), FAST)
    assert second.key == first.key and (folders[0] / "model.safetensors").stat().st_mtime_ns == stamp


def test_unknown_attribute_lists_the_known_ones(classifier):
    with pytest.raises(FaceganError, match="unknown attribute 'Smiling': the labelled dataset has Top_Bright, Left_Red, Noise"):
        classifier.index("Smiling")


def test_dataset_without_attributes_is_refused():
    dataset = planted_dataset()
    dataset.attributes = None
    with pytest.raises(FaceganError, match="has no attribute labels"):
        train_classifier(dataset, FAST)


def test_corrupt_classifier_is_one_line(tmp_path):
    (tmp_path / "classifier.json").write_text('{"format": "facegan-attribute-classifier", "format_version": 1}')
    with pytest.raises(FaceganError, match="is corrupt"):
        load_classifier(tmp_path)
