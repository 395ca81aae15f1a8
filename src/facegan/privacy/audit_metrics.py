"""The numbers behind the privacy audit: exact ROC curves, nearest-neighbour distances, and how far
chance alone moves each number for the set sizes at hand.

Everything here is plain numpy/torch on arrays; `audit.py` decides what to compare with what.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from facegan.errors import FaceganError

__all__ = [
    "roc_curve",
    "roc_auc",
    "tpr_at_fpr",
    "auc_chance_sd",
    "auc_p_value",
    "near_copy_null_shares",
    "Neighbours",
    "nearest_neighbours",
    "nearest_distances",
    "nearest_neighbour_ratio",
    "reduce_curve",
]


# ---- ROC -----------------------------------------------------------------------------------------
def _scores(values: np.ndarray | list[float], what: str) -> np.ndarray:
    scores = np.asarray(values, dtype=np.float64).ravel()
    if scores.size == 0:
        raise FaceganError(f"a membership attack needs at least one {what} score")
    if not np.all(np.isfinite(scores)):
        raise FaceganError(f"the {what} scores contain NaN or infinite values; the attack cannot be evaluated")
    return scores


def roc_curve(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ROC of the rule "member if score >= t", at every distinct score t.

    Returns (fpr, tpr, thresholds), each (T + 1,) for T distinct scores: the first point is
    (0, 0) at t = +inf, the last (1, 1) at the lowest score. Tied scores move together, so a tie
    between a member and a non-member is one diagonal step (the area counts it as half a win).
    """
    members = _scores(member_scores, "member")
    nonmembers = _scores(nonmember_scores, "non-member")
    scores = np.concatenate([members, nonmembers])
    is_member = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    order = np.argsort(-scores, kind="stable")  # highest score first
    scores, is_member = scores[order], is_member[order]
    # The last position of each run of equal scores: thresholds sit between distinct values only.
    ends = np.append(np.flatnonzero(np.diff(scores)), len(scores) - 1)
    true_positives = np.cumsum(is_member)[ends]
    false_positives = (ends + 1) - true_positives
    tpr = np.concatenate([[0.0], true_positives / len(members)])
    fpr = np.concatenate([[0.0], false_positives / len(nonmembers)])
    thresholds = np.concatenate([[np.inf], scores[ends]])
    return fpr, tpr, thresholds


def roc_auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under an ROC curve by the trapezoid rule; on an exact curve it equals P(member > non-member) + P(tie)/2."""
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """The highest true-positive rate any threshold reaches while its false-positive rate stays <= max_fpr.

    No interpolation: with fewer than 1/max_fpr non-members the only such threshold has FPR 0, and the
    value is the share of members an attacker catches without a single false accusation.
    """
    fpr, tpr = np.asarray(fpr), np.asarray(tpr)
    allowed = fpr <= max_fpr + 1e-12  # a hair of slack for FPRs like 3/300 that are exactly 1% in decimal
    return float(tpr[allowed].max())


def auc_chance_sd(num_members: int, num_nonmembers: int) -> float:
    """Standard deviation of the AUC of a scorer that knows nothing (Mann-Whitney U under the null, no ties).

    sqrt((n1 + n2 + 1) / (12 n1 n2)): 0.070 for 40 vs 30 faces, 0.016 for 1000 vs 500. An AUC within
    about 2 of these of 0.5 is what guessing produces on sets this size.
    """
    return math.sqrt((num_members + num_nonmembers + 1) / (12.0 * num_members * num_nonmembers))


def auc_p_value(auc: float, num_members: int, num_nonmembers: int) -> float:
    """Two-sided chance of an AUC at least this far from 0.5 from an attacker that knows nothing (normal approximation)."""
    z = abs(auc - 0.5) / auc_chance_sd(num_members, num_nonmembers)
    return math.erfc(z / math.sqrt(2.0))


def near_copy_null_shares(num_holdout: int, num_generated: int, quantile: float = 0.05, num_draws: int = 20000, seed: int = 0) -> np.ndarray:
    """Near-copy shares a generator that leaks nothing shows by chance: (num_draws,) samples of the null.

    "Leaks nothing" = its faces are as far from the training set as new real faces (exchangeable with
    the holdout). Then only ranks matter, so uniforms stand in for distances: the threshold is the
    holdout's `quantile` (numpy's linear interpolation between order statistics k and k+1), whose level
    U follows the order statistics of uniforms exactly (Beta(k+1, n-k) and a Beta(1, n-k-1) gap), and
    each of the generated faces falls below it with probability U. Fixed seed: the same sizes always
    give the same null. With 30 holdout faces the 5% line itself moves so much that 17% can be chance.
    """
    rng = np.random.default_rng(seed)
    position = quantile * (num_holdout - 1)
    below = int(math.floor(position))
    fraction = position - below
    level = rng.beta(below + 1, num_holdout - below, num_draws)  # the (below+1)-th smallest of n uniforms
    if fraction > 0:
        # The next order statistic: the smallest of the n-below-1 uniforms above it.
        level = level + fraction * (1.0 - level) * rng.beta(1, num_holdout - below - 1, num_draws)
    return rng.binomial(num_generated, level) / num_generated


def reduce_curve(fpr: np.ndarray, tpr: np.ndarray, max_points: int = 400) -> tuple[list[float], list[float]]:
    """An ROC curve small enough for JSON: every point when there are few, else evenly spaced vertices
    plus every vertex at FPR <= 1% (the region low-FPR metrics read), always with both ends."""
    fpr, tpr = np.asarray(fpr), np.asarray(tpr)
    if len(fpr) > max_points:
        keep = np.zeros(len(fpr), dtype=bool)
        keep[np.linspace(0, len(fpr) - 1, max_points).round().astype(int)] = True
        keep[fpr <= 0.01] = True
        fpr, tpr = fpr[keep], tpr[keep]
    return [round(float(value), 6) for value in fpr], [round(float(value), 6) for value in tpr]


# ---- nearest neighbours --------------------------------------------------------------------------
class Neighbours(NamedTuple):
    """Nearest neighbours both ways from one pass over the query x reference distances."""

    distances: np.ndarray
    """(Q, k) float64: each query's k closest reference distances, closest first."""
    indices: np.ndarray
    """(Q, k) int64: which references those are."""
    reference_distances: np.ndarray
    """(R,) float64: each reference's distance to its closest query (the same matrix read by column)."""


def nearest_neighbours(
    queries: np.ndarray,
    references: np.ndarray,
    k: int = 1,
    scale: float = 1.0,
    chunk_elements: int = 2**22,
) -> Neighbours:
    """Euclidean nearest neighbours of each query among the references, and of each reference among the queries.

    queries (Q, D) and references (R, D) may be any numeric dtype (uint8 pixels stay uint8 in memory);
    each chunk is converted to float64 just before torch.cdist, so an exact copy measures ~1e-7, not the
    ~1e-2 that float32's |x|^2 + |y|^2 - 2xy cancellation gives on 12k-pixel faces. Each block holds
    about `chunk_elements` float64 values whatever Q, R and D are. Distances are multiplied by `scale`.
    Reading the same blocks by column gives the reverse direction for free: the audit's generated ->
    train pass also yields every training face's distance to its closest generated face (GAN-Leaks).
    """
    queries, references = np.asarray(queries), np.asarray(references)
    if queries.ndim != 2 or references.ndim != 2 or queries.shape[1] != references.shape[1]:
        raise ValueError(f"nearest_neighbours needs (Q, D) and (R, D) arrays, got {queries.shape} and {references.shape}")
    if len(references) < k:
        raise FaceganError(f"nearest-neighbour distances need at least {k} reference faces, got {len(references)}")
    if len(queries) == 0:
        raise FaceganError("nearest-neighbour distances need at least one query face")
    num_queries, num_references = len(queries), len(references)
    best_distances = np.empty((num_queries, k), dtype=np.float64)
    best_indices = np.empty((num_queries, k), dtype=np.int64)
    reference_distances = np.full(num_references, np.inf)
    # Both float64 copies (rows x D) and the distance block (q x r) stay within chunk_elements.
    dim = max(1, queries.shape[1])
    reference_rows = max(k, min(num_references, chunk_elements // dim))
    query_rows = max(1, min(chunk_elements // dim, chunk_elements // reference_rows))
    for query_start in range(0, num_queries, query_rows):
        query = torch.from_numpy(np.asarray(queries[query_start : query_start + query_rows], dtype=np.float64))  # (q, D)
        running_distances = running_indices = None
        for reference_start in range(0, num_references, reference_rows):
            reference = torch.from_numpy(np.asarray(references[reference_start : reference_start + reference_rows], dtype=np.float64))
            distances = torch.cdist(query, reference)  # (q, r)
            column = reference_distances[reference_start : reference_start + len(reference)]
            np.minimum(column, distances.min(dim=0).values.numpy(), out=column)  # (r,) in place
            chunk_k = min(k, distances.shape[1])
            values, indices = torch.topk(distances, chunk_k, dim=1, largest=False, sorted=True)
            indices = indices + reference_start
            if running_distances is not None:
                # Merge with the best so far; the earlier chunk goes first so ties keep the lower index.
                values = torch.cat([running_distances, values], dim=1)
                indices = torch.cat([running_indices, indices], dim=1)
                order = torch.argsort(values, dim=1, stable=True)[:, :k]
                values, indices = torch.gather(values, 1, order), torch.gather(indices, 1, order)
            running_distances, running_indices = values, indices
        best_distances[query_start : query_start + len(query)] = running_distances.numpy() * scale
        best_indices[query_start : query_start + len(query)] = running_indices.numpy()
    return Neighbours(best_distances, best_indices, reference_distances * scale)


def nearest_distances(queries: np.ndarray, references: np.ndarray, k: int = 1, scale: float = 1.0, chunk_elements: int = 2**22) -> tuple[np.ndarray, np.ndarray]:
    """Distances (Q, k) float64 and indices (Q, k) int64 of each query's k closest references; see `nearest_neighbours`."""
    found = nearest_neighbours(queries, references, k, scale, chunk_elements)
    return found.distances, found.indices


def nearest_neighbour_ratio(distances: np.ndarray) -> np.ndarray:
    """NNDR d1/d2 from (N, 2) nearest distances; 0 when both are 0 (a copy of a duplicated face is still a copy)."""
    first, second = distances[:, 0], distances[:, 1]
    return np.divide(first, second, out=np.zeros_like(first), where=second > 0)
