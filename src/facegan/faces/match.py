"""The match rule: when two face descriptors are called the same person.

A recogniser maps faces to descriptors; its `MatchRule` says how far apart two descriptors may be and
still be one person. Every rule is stated as a *distance* (lower = more alike), so a caller compares
`distance < threshold` whatever the recogniser: Euclidean for dlib's unnormalised descriptors, cosine
distance (1 - cosine similarity) for recognisers trained with angular margins.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facegan.errors import FaceganError

METRICS = ("euclidean", "cosine")


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
    raise FaceganError(f"unknown descriptor distance {metric!r}; choose one of: {', '.join(METRICS)}")


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
