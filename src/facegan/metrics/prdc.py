"""Precision, recall, density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics").

Each real sample gets a ball reaching its k-th nearest real neighbour; the union of balls is the
real manifold (likewise for fakes).
    precision  share of fakes inside some real ball                          (fidelity)
    recall     share of reals inside some fake ball                          (diversity)
    density    mean number of real balls holding a fake, / k; ~1 when alike  (fidelity, outlier-robust)
    coverage   share of real balls whose centre's nearest fake lies inside   (diversity, outlier-robust)
Distances are computed in row chunks with torch.cdist, so memory stays O(chunk x N), not O(N²).
"""
from __future__ import annotations

import numpy as np
import torch

from facegan.errors import FaceganError

DEFAULT_NUM_NEIGHBOURS = 5
DEFAULT_CHUNK_SIZE = 1024


def _as_float64(features: np.ndarray) -> torch.Tensor:
    # float64: cdist's matrix-product path loses the small distances of near-duplicates in float32.
    return torch.as_tensor(np.asarray(features), dtype=torch.float64)


def kth_neighbour_distances(features: np.ndarray, k: int = DEFAULT_NUM_NEIGHBOURS, chunk_size: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
    """Distance from each row of (N, D) to its k-th nearest other row: (N,) float64 (the ball radii)."""
    points = _as_float64(features)
    if len(points) <= k:
        raise FaceganError(f"k={k} nearest neighbours need more than {k} samples per set, got {len(points)}")
    radii = []
    for start in range(0, len(points), chunk_size):
        distances = torch.cdist(points[start : start + chunk_size], points)  # (C, N)
        # k + 1 smallest: the row itself is at distance 0 and is not its own neighbour.
        radii.append(distances.topk(k + 1, dim=1, largest=False).values[:, k])  # (C,)
    return torch.cat(radii).numpy()


def precision_recall_density_coverage(
    real_features: np.ndarray,
    fake_features: np.ndarray,
    k: int = DEFAULT_NUM_NEIGHBOURS,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, float]:
    """PRDC of fakes (M, D) against reals (N, D) with k nearest neighbours -> {precision, recall, density, coverage}."""
    reals, fakes = _as_float64(real_features), _as_float64(fake_features)
    if reals.ndim != 2 or fakes.ndim != 2 or reals.shape[1] != fakes.shape[1]:
        raise FaceganError(f"PRDC needs two (N, D) feature sets of one D, got {tuple(reals.shape)} and {tuple(fakes.shape)}")
    if k < 1:
        raise FaceganError(f"PRDC needs k >= 1, got {k}")
    real_radii = torch.from_numpy(kth_neighbour_distances(real_features, k, chunk_size))  # (N,)
    fake_radii = torch.from_numpy(kth_neighbour_distances(fake_features, k, chunk_size))  # (M,)

    balls_holding_fake = torch.zeros(len(fakes), dtype=torch.int64)  # (M,) real balls around each fake
    real_in_fake_ball = torch.zeros(len(reals), dtype=torch.bool)  # (N,)
    real_ball_covered = torch.zeros(len(reals), dtype=torch.bool)  # (N,)
    for start in range(0, len(reals), chunk_size):
        stop = start + chunk_size
        distances = torch.cdist(reals[start:stop], fakes)  # (C, M)
        balls_holding_fake += (distances < real_radii[start:stop, None]).sum(dim=0)
        real_in_fake_ball[start:stop] = (distances < fake_radii[None, :]).any(dim=1)
        real_ball_covered[start:stop] = distances.min(dim=1).values < real_radii[start:stop]
    return {
        "precision": float((balls_holding_fake > 0).double().mean()),
        "recall": float(real_in_fake_ball.double().mean()),
        "density": float(balls_holding_fake.double().mean() / k),
        "coverage": float(real_ball_covered.double().mean()),
    }
