"""Fréchet distance between two Gaussians fitted to feature sets (FID when the features are Inception's).

    FD = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

The usual code (pytorch-fid) takes `scipy.linalg.sqrtm(S1 @ S2)`: S1 @ S2 is not symmetric, so the
square root comes out complex and, for singular covariances (fewer samples than dimensions, which is
the norm for 2048-D features on small face sets), unstable enough to need an epsilon hack. Here the
trace is taken through a symmetric matrix with the same eigenvalues,

    tr((S1 S2)^(1/2)) = tr((A S2 A)^(1/2)),  A = S1^(1/2)

(S1 S2 = A (A S2 A) A^-1 when A is invertible, and by continuity otherwise), so only symmetric
eigendecompositions of positive semi-definite matrices are needed; round-off negatives are clipped.
"""
from __future__ import annotations

import numpy as np

from facegan.errors import FaceganError


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> mean (D,) and unbiased covariance (D, D), both float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise FaceganError(f"Fréchet statistics need at least 2 feature rows of shape (N, D), got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (D, D); round-off negatives count as 0."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)  # (D,), (D, D)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((sigma1 sigma2)^(1/2)) for PSD covariances, via the symmetric sqrt(sigma1) sigma2 sqrt(sigma1)."""
    root1 = _psd_sqrt(sigma1)  # (D, D)
    middle = root1 @ sigma2 @ root1  # (D, D), PSD in exact arithmetic
    middle = (middle + middle.T) / 2.0  # symmetric to the last bit, so eigvalsh sees what we mean
    eigenvalues = np.linalg.eigvalsh(middle)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64; never negative.

    Correct for rank-deficient covariances (N < D). Inputs: means (D,), covariances (D, D).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    dim = mu1.shape[0]
    if mu1.shape != (dim,) or mu2.shape != (dim,) or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise FaceganError(
            f"Fréchet distance needs means (D,) and covariances (D, D) of one D; got {mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    arrays = (mu1, mu2, sigma1, sigma2)
    if not all(np.all(np.isfinite(array)) for array in arrays):
        raise FaceganError("Fréchet distance got non-finite statistics (NaN or inf features)")
    # Covariances are symmetric by definition; averaging with the transpose removes storage round-off.
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2.0, (sigma2 + sigma2.T) / 2.0
    difference = mu1 - mu2
    distance = difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    # Exact zero can come out as -1e-13; a distance is never negative.
    return max(float(distance), 0.0)


def frechet_distance_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))
