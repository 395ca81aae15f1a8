"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with a cubic polynomial kernel.

Named after Inception, but defined for any feature space: here it is as often computed on face
descriptors. Unlike FD it has an unbiased estimator, so values from different sample sizes compare,
and it is averaged over random subsets to give a mean and a spread (as torch-fidelity does).
"""
from __future__ import annotations

import numpy as np

from facegan.errors import FaceganError

DEFAULT_NUM_SUBSETS = 100
DEFAULT_SUBSET_SIZE = 1000


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x·y / d + 1)^3 for rows of x (M, D) and y (N, D) -> (M, N) float64."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def polynomial_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² between samples x (M, D) and y (N, D) under the cubic polynomial kernel.

    Within-set sums leave out the diagonal (k(x_i, x_i)), which is what makes the estimate unbiased;
    it can therefore be slightly negative when the two distributions are the same.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise FaceganError(f"KID needs at least 2 samples on each side, got {m} and {n}")
    kernel_xx = polynomial_kernel(x, x)  # (M, M)
    kernel_yy = polynomial_kernel(y, y)  # (N, N)
    kernel_xy = polynomial_kernel(x, y)  # (M, N)
    within_x = (kernel_xx.sum() - np.trace(kernel_xx)) / (m * (m - 1))
    within_y = (kernel_yy.sum() - np.trace(kernel_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * kernel_xy.mean())


def kernel_inception_distance(
    features1: np.ndarray,
    features2: np.ndarray,
    num_subsets: int = DEFAULT_NUM_SUBSETS,
    subset_size: int = DEFAULT_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """KID between two (N, D) feature sets: (mean, std) of unbiased MMD² over random subsets.

    Each of `num_subsets` rounds draws `subset_size` rows without replacement from each side (the size
    is clipped to the smaller set); the draws come from a generator seeded with `seed`, so the result
    is reproducible. Use `effective_subset_size` to report the size actually used.
    """
    features1, features2 = np.asarray(features1, dtype=np.float64), np.asarray(features2, dtype=np.float64)
    if features1.ndim != 2 or features2.ndim != 2 or features1.shape[1] != features2.shape[1]:
        raise FaceganError(f"KID needs two (N, D) feature sets of one D, got {features1.shape} and {features2.shape}")
    if num_subsets < 1:
        raise FaceganError(f"KID needs at least 1 subset, got {num_subsets}")
    size = effective_subset_size(len(features1), len(features2), subset_size)
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)  # (S,)
    for subset in range(num_subsets):
        rows1 = rng.choice(len(features1), size, replace=False)
        rows2 = rng.choice(len(features2), size, replace=False)
        values[subset] = polynomial_mmd2_unbiased(features1[rows1], features2[rows2])
    return float(values.mean()), float(values.std())


def effective_subset_size(num1: int, num2: int, subset_size: int = DEFAULT_SUBSET_SIZE) -> int:
    """The subset size KID uses: `subset_size` clipped to the smaller set; at least 2 samples needed."""
    size = min(int(subset_size), num1, num2)
    if size < 2:
        raise FaceganError(f"KID needs subsets of at least 2 samples per side, but got {num1} and {num2} samples and subset size {subset_size}")
    return size
