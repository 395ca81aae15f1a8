"""Precision, recall, density, coverage (Naeem et al. 2020): limits, a hand-checked case, chunking."""
from __future__ import annotations

import numpy as np
import pytest

from facegan.errors import FaceganError
from facegan.metrics.prdc import kth_neighbour_distances, precision_recall_density_coverage


def test_identical_sets():
    features = np.random.default_rng(0).standard_normal((200, 6))
    result = precision_recall_density_coverage(features, features.copy(), k=5)
    assert result["precision"] == 1.0 and result["recall"] == 1.0 and result["coverage"] == 1.0
    assert result["density"] == pytest.approx(1.0, abs=0.1)


def test_disjoint_far_apart_sets():
    rng = np.random.default_rng(1)
    reals, fakes = rng.standard_normal((100, 4)), rng.standard_normal((80, 4)) + 100.0
    assert precision_recall_density_coverage(reals, fakes, k=5) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_hand_checked_one_dimensional_example():
    # k=1. Reals at 0, 1, 2, 10: 1-NN radii 1, 1, 1, 8.  Fakes at 0.5, 2.5, 20: 1-NN radii 2, 2, 17.5.
    reals = np.array([[0.0], [1.0], [2.0], [10.0]])
    fakes = np.array([[0.5], [2.5], [20.0]])
    result = precision_recall_density_coverage(reals, fakes, k=1)
    # precision: 0.5 in the balls of 0 and 1; 2.5 in the ball of 2 (and of 10: |2.5-10| = 7.5 < 8); 20 in none -> 2/3
    assert result["precision"] == pytest.approx(2 / 3)
    # recall: reals inside a fake ball: 0 (|0-0.5| < 2), 1, 2 (|2-2.5| < 2), 10 (|10-20| = 10 < 17.5) -> 4/4
    assert result["recall"] == pytest.approx(1.0)
    # density: balls holding each fake 2 + 2 + 0, over k * num fakes -> 4/3
    assert result["density"] == pytest.approx(4 / 3)
    # coverage: nearest fake inside own ball? 0 (0.5 < 1) yes, 1 (0.5 < 1) yes, 2 (0.5 < 1) yes, 10 (7.5 < 8) yes -> 1
    assert result["coverage"] == pytest.approx(1.0)
    np.testing.assert_allclose(kth_neighbour_distances(reals, k=1), [1, 1, 1, 8])


def test_chunking_does_not_change_results():
    rng = np.random.default_rng(2)
    reals, fakes = rng.standard_normal((150, 5)), rng.standard_normal((120, 5)) * 1.3 + 0.2
    whole = precision_recall_density_coverage(reals, fakes, k=5, chunk_size=4096)
    chunked = precision_recall_density_coverage(reals, fakes, k=5, chunk_size=7)
    assert whole == chunked
    assert 0 < whole["precision"] < 1 and 0 < whole["coverage"] < 1  # a non-trivial case


def test_needs_more_samples_than_k():
    with pytest.raises(FaceganError, match="more than 5"):
        precision_recall_density_coverage(np.zeros((5, 2)), np.ones((10, 2)), k=5)
