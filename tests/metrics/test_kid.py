"""KID: unbiased polynomial MMD² against a direct double loop, seeding, same-distribution ~0."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from facegan.errors import FaceganError
from facegan.metrics.kid import effective_subset_size, kernel_inception_distance, polynomial_mmd2_unbiased


def reference_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased estimator written out term by term, O(n²) Python loops."""
    d = x.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    within_x = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    within_y = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    across = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return within_x + within_y - 2 * across


@pytest.mark.parametrize("m, n", [(7, 7), (5, 9)])
def test_matches_direct_reference(m, n):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((m, 4)), rng.standard_normal((n, 4)) + 0.5
    assert polynomial_mmd2_unbiased(x, y) == pytest.approx(reference_mmd2(x, y), rel=1e-12)


def test_subsets_are_the_mean_of_seeded_subset_estimates():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((30, 3)), rng.standard_normal((20, 3)) * 1.5
    mean, std = kernel_inception_distance(x, y, num_subsets=4, subset_size=10, seed=7)
    # Re-draw the same subsets with the same generator, by hand.
    draws = np.random.default_rng(7)
    values = []
    for _ in range(4):
        rows_x, rows_y = draws.choice(30, 10, replace=False), draws.choice(20, 10, replace=False)
        values.append(reference_mmd2(x[rows_x], y[rows_y]))
    assert mean == pytest.approx(np.mean(values), rel=1e-10)
    assert std == pytest.approx(np.std(values), rel=1e-8)
    assert kernel_inception_distance(x, y, 4, 10, seed=7) == (mean, std)  # reproducible
    assert kernel_inception_distance(x, y, 4, 10, seed=8) != (mean, std)


def test_same_distribution_near_zero_and_different_distribution_clearly_positive():
    rng = np.random.default_rng(2)
    first, second = rng.standard_normal((400, 16)), rng.standard_normal((400, 16))
    same_mean, same_std = kernel_inception_distance(first, second, num_subsets=10, subset_size=200)
    shifted_mean, _ = kernel_inception_distance(first, second + 1.0, num_subsets=10, subset_size=200)
    assert abs(same_mean) < 3 * same_std + 1e-3
    assert shifted_mean > 50 * abs(same_mean) and shifted_mean > 0.1


def test_subset_size_is_clipped_to_the_smaller_set():
    assert effective_subset_size(30, 12, 1000) == 12
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((30, 3)), rng.standard_normal((12, 3))
    # With the subset as large as the smaller set, y is used whole in every subset.
    assert np.isfinite(kernel_inception_distance(x, y, num_subsets=3)[0])
    with pytest.raises(FaceganError, match="at least 2"):
        kernel_inception_distance(x, y[:1])
    with pytest.raises(FaceganError, match="one D"):
        kernel_inception_distance(x, rng.standard_normal((12, 4)))
