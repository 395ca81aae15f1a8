"""The match rule: when two face descriptors are called the same person.

A recogniser maps faces to descriptors; its `MatchRule` says how far apart two descriptors may be and
still be one person. Every rule is stated as a *distance* (lower = more alike), so a caller compares
`distance < threshold` whatever the recogniser: Euclidean for dlib's unnormalised descriptors, cosine
distance (1 - cosine similarity) for recognisers trained with angular margins, and the chi-square
distance OpenCV's LBPH compares its histograms with (`cv2.compareHist(..., HISTCMP_CHISQR_ALT)`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facegan.errors import FaceganError

METRICS = ("euclidean", "cosine", "chi-square")
_CHI_SQUARE_ROWS = 256  # rows per block: LBPH histograms are 16384 wide, so all pairs at once would need gigabytes


def pair_distances(first: np.ndarray, second: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Row-by-row distances of two descriptor sets: (N, D) and (N, D) (or (D,) each) -> float64 (N,) (or a scalar array)."""
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    if first.shape != second.shape or first.ndim not in (1, 2):
        raise FaceganError(f"descriptor pairs must have one shape, (D,) or (N, D); got {first.shape} and {second.shape}")
    if metric == "euclidean":
        return np.linalg.norm(first - second, axis=-1)
    if metric == "cosine":
        norms = np.linalg.norm(first, axis=-1) * np.linalg.norm(second, axis=-1)
        return 1.0 - (first * second).sum(-1) / np.maximum(norms, 1e-12)
    if metric == "chi-square":
        return _chi_square(first, second)
    raise FaceganError(f"unknown descriptor distance {metric!r}; choose one of: {', '.join(METRICS)}")


def _chi_square(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """OpenCV's HISTCMP_CHISQR_ALT: 2 * sum((a - b)^2 / (a + b)) over bins where a + b is not ~0."""
    if first.ndim == 1:
        return _chi_square(first[None], second[None])[0]
    distances = np.empty(len(first), dtype=np.float64)
    for start in range(0, len(first), _CHI_SQUARE_ROWS):
        a, b = first[start : start + _CHI_SQUARE_ROWS], second[start : start + _CHI_SQUARE_ROWS]
        total = a + b
        used = np.abs(total) > np.finfo(np.float64).eps
        distances[start : start + len(a)] = 2.0 * np.where(used, (a - b) ** 2 / np.where(used, total, 1.0), 0.0).sum(-1)
    return distances


@dataclass(frozen=True)
class MatchRule:
    """Same person when `metric` distance < `threshold` (the recogniser's own operating point)."""

    metric: str
    threshold: float

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown descriptor distance {self.metric!r}; choose one of: {', '.join(METRICS)}")
        if not np.isfinite(self.threshold) or self.threshold <= 0:
            raise ValueError(f"a match threshold is a positive distance, got {self.threshold!r}")

    def distance(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Row-by-row distances (N,) of two (N, D) descriptor sets."""
        return pair_distances(first, second, self.metric)

    def matches(self, distances: np.ndarray) -> np.ndarray:
        """Bool array: which distances (already measured with `metric`) are the same person."""
        return np.asarray(distances) < self.threshold

    def same_person(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Bool (N,): whether each pair of descriptors is one person."""
        return self.matches(self.distance(first, second))
