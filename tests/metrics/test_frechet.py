"""Fréchet distance: agreement with the pytorch-fid formula, singular covariances, invariants."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import linalg

from facegan.errors import FaceganError
from facegan.metrics.frechet import feature_statistics, frechet_distance, frechet_distance_from_features, trace_sqrt_product


def reference_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance (sqrtm of the non-symmetric product), as published."""
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _gaussian_features(seed: int, num: int, dim: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((dim, dim)) / np.sqrt(dim)  # correlated dimensions
    return rng.standard_normal((num, dim)) @ mixing + shift  # (N, D)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scipy_sqrtm_reference_on_full_rank_data(seed):
    first = _gaussian_features(seed, 400, 24)
    second = _gaussian_features(seed + 100, 300, 24, shift=0.3)
    statistics = (*feature_statistics(first), *feature_statistics(second))
    ours, reference = frechet_distance(*statistics), reference_frechet_distance(*statistics)
    assert reference > 0.1  # a real difference, so the relative tolerance means something
    assert ours == pytest.approx(reference, rel=1e-6)


def test_hand_computed_one_dimensional_case():
    # 1-D: FD = (m1 - m2)^2 + (s1 - s2)^2 for standard deviations s1, s2.
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == pytest.approx(4.0 + 1.0)


def test_rank_deficient_covariances_fewer_samples_than_dimensions():
    first = _gaussian_features(0, 20, 64)  # rank <= 19 of 64
    second = _gaussian_features(1, 30, 64, shift=0.5)
    distance = frechet_distance_from_features(first, second)
    assert np.isfinite(distance) and distance > 0
    assert frechet_distance_from_features(first, first) == pytest.approx(0.0, abs=1e-9)
    # Independent sample sets of one distribution are closer than shifted ones.
    same_distribution = frechet_distance_from_features(first, _gaussian_features(2, 20, 64))
    assert same_distribution < distance


def test_symmetric():
    first, second = _gaussian_features(3, 50, 16), _gaussian_features(4, 40, 16, shift=0.2)
    assert frechet_distance_from_features(first, second) == pytest.approx(frechet_distance_from_features(second, first), rel=1e-9)


def test_refuses_mismatched_or_non_finite_statistics():
    mu, sigma = np.zeros(3), np.eye(3)
    with pytest.raises(FaceganError, match="covariances"):
        frechet_distance(mu, sigma, np.zeros(4), np.eye(4))
    with pytest.raises(FaceganError, match="non-finite"):
        frechet_distance(mu, sigma * np.nan, mu, sigma)
    with pytest.raises(FaceganError, match="at least 2"):
        feature_statistics(np.zeros((1, 3)))


samples = st.integers(min_value=0, max_value=2**31 - 1).flatmap(
    lambda seed: st.tuples(st.just(seed), st.integers(2, 12), st.integers(3, 40))
)


def _eigenvalue_frechet_distance(mu1, sigma1, mu2, sigma2):
    """FD with tr((S1 S2)^(1/2)) as the sum of square roots of the eigenvalues of S1 S2 (real, >= 0 in exact arithmetic)."""
    eigenvalues = np.linalg.eigvals(sigma1 @ sigma2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues.real, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


@settings(max_examples=40, deadline=None)
@given(samples, samples)
def test_never_negative(first, second):
    # The result is clamped at 0, so ">= 0" alone proves nothing: the unclamped covariance term (a squared
    # Bures distance) must itself be >= 0 and match an independent eigenvalue computation.
    seed1, dim, num1 = first
    seed2, _, num2 = second
    mu1, sigma1 = feature_statistics(_gaussian_features(seed1, num1, dim))
    mu2, sigma2 = feature_statistics(_gaussian_features(seed2, num2, dim, 0.1))
    scale = 1.0 + np.trace(sigma1) + np.trace(sigma2)
    covariance_term = np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    assert covariance_term >= -1e-6 * scale  # square roots of round-off-level eigenvalues are ~1e-8, not 1e-16
    distance = frechet_distance(mu1, sigma1, mu2, sigma2)
    assert distance >= float((mu1 - mu2) @ (mu1 - mu2)) - 1e-6 * scale  # the mean term is a lower bound
    assert distance == pytest.approx(max(_eigenvalue_frechet_distance(mu1, sigma1, mu2, sigma2), 0.0), abs=1e-6 * scale)


@settings(max_examples=40, deadline=None)
@given(samples, st.lists(st.floats(-5, 5), min_size=12, max_size=12))
def test_shifted_means_with_equal_covariances_give_squared_mean_distance(sample, shift):
    seed, dim, num = sample
    mu, sigma = feature_statistics(_gaussian_features(seed, num, dim))  # rank may be < dim
    delta = np.array(shift[:dim])
    assert frechet_distance(mu, sigma, mu + delta, sigma) == pytest.approx(float(delta @ delta), abs=1e-6 * (1 + np.trace(sigma)))
