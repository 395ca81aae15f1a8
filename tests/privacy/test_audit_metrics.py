"""Audit numbers against brute force: exact ROC/AUC/TPR@FPR, chunked nearest neighbours, the chance models."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facegan.errors import FaceganError
from facegan.privacy.audit_metrics import (
    auc_chance_sd,
    auc_p_value,
    near_copy_null_shares,
    nearest_distances,
    nearest_neighbour_ratio,
    nearest_neighbours,
    reduce_curve,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)

# Small integers force ties between members and non-members; floats exercise the general case.
scores = st.one_of(
    st.lists(st.integers(-3, 3), min_size=1, max_size=25),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=25),
)


def brute_force_points(members, nonmembers):
    """(FPR, TPR) of "member if score >= t" for t = +inf and every score that occurs."""
    members, nonmembers = np.asarray(members, float), np.asarray(nonmembers, float)
    thresholds = [np.inf, *np.unique(np.concatenate([members, nonmembers]))]
    return {(float(np.mean(nonmembers >= t)), float(np.mean(members >= t))) for t in thresholds}


@settings(max_examples=200, deadline=None)
@given(scores, scores)
def test_roc_matches_a_brute_force_threshold_sweep(members, nonmembers):
    fpr, tpr, thresholds = roc_curve(members, nonmembers)
    assert set(zip(fpr.tolist(), tpr.tolist())) == brute_force_points(members, nonmembers)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thresholds) < 0)
    # Each returned threshold gives exactly its point.
    m, n = np.asarray(members, float), np.asarray(nonmembers, float)
    for f, t, threshold in zip(fpr, tpr, thresholds):
        assert (np.mean(n >= threshold), np.mean(m >= threshold)) == (f, t)


@settings(max_examples=200, deadline=None)
@given(scores, scores)
def test_auc_is_the_probability_a_member_outscores_a_non_member(members, nonmembers):
    m, n = np.asarray(members, float)[:, None], np.asarray(nonmembers, float)[None, :]
    pairwise = np.mean((m > n) + 0.5 * (m == n))
    assert roc_auc(*roc_curve(members, nonmembers)[:2]) == pytest.approx(pairwise, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(scores, scores, st.sampled_from([0.0, 0.001, 0.01, 0.1, 1 / 3, 0.5, 1.0]))
def test_tpr_at_fpr_is_the_best_threshold_within_the_fpr_budget(members, nonmembers, level):
    m, n = np.asarray(members, float), np.asarray(nonmembers, float)
    thresholds = [np.inf, *np.unique(np.concatenate([m, n]))]
    best = max(np.mean(m >= t) for t in thresholds if np.mean(n >= t) <= level + 1e-12)
    assert tpr_at_fpr(*roc_curve(members, nonmembers)[:2], level) == best


def test_roc_known_values():
    fpr, tpr, _ = roc_curve([3, 2, 2], [2, 1])
    # thresholds: inf, 3, 2, 1 -> (0, 0), (0, 1/3), (1/2, 1), (1, 1)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1, 1])
    assert roc_auc(fpr, tpr) == pytest.approx(5 / 6, abs=1e-12)  # pairs: 1, 1 | 0.5, 1 | 0.5, 1
    assert tpr_at_fpr(fpr, tpr, 0.01) == pytest.approx(1 / 3)
    assert roc_auc(*roc_curve([5, 6], [1, 2])[:2]) == 1.0 and roc_auc(*roc_curve([1, 2], [5, 6])[:2]) == 0.0


def test_roc_refuses_empty_or_nan_scores():
    with pytest.raises(FaceganError, match="at least one member"):
        roc_curve([], [1.0])
    with pytest.raises(FaceganError, match="NaN"):
        roc_curve([1.0, float("nan")], [1.0])


def test_reduced_curve_keeps_the_ends_and_the_low_fpr_region():
    rng = np.random.default_rng(0)
    fpr, tpr, _ = roc_curve(rng.normal(0.5, 1, 3000), rng.normal(0, 1, 3000))
    small_fpr, small_tpr = reduce_curve(fpr, tpr, max_points=100)
    assert len(small_fpr) < len(fpr) and (small_fpr[0], small_tpr[-1]) == (0.0, 1.0)
    assert sum(value <= 0.01 for value in small_fpr) == int(np.sum(fpr <= 0.01))


def test_chance_model_of_the_auc_matches_simulated_blind_attackers():
    rng = np.random.default_rng(0)
    aucs = [roc_auc(*roc_curve(rng.random(40), rng.random(30))[:2]) for _ in range(3000)]
    assert np.std(aucs) == pytest.approx(auc_chance_sd(40, 30), rel=0.06)
    assert auc_chance_sd(40, 30) == pytest.approx(0.0702, abs=1e-4)
    assert auc_p_value(0.5, 40, 30) == 1.0
    # Share of blind attackers at least 2.58 sd from 0.5 ~ 1%.
    assert np.mean([auc_p_value(a, 40, 30) < 0.01 for a in aucs]) == pytest.approx(0.01, abs=0.006)


@pytest.mark.parametrize("num_holdout, num_generated", [(30, 30), (30, 200), (101, 50), (7, 400)])
def test_near_copy_null_matches_a_brute_force_simulation(num_holdout, num_generated):
    """The analytic order-statistic null agrees with simulating holdout and generated distances directly."""
    rng = np.random.default_rng(1)
    simulated = []
    for _ in range(20000):
        holdout, generated = rng.random(num_holdout), rng.random(num_generated)
        simulated.append(np.mean(generated < np.percentile(holdout, 5)))
    null = near_copy_null_shares(num_holdout, num_generated)
    for quantile in (0.5, 0.9, 0.99):
        assert np.quantile(null, quantile) == pytest.approx(np.quantile(simulated, quantile), abs=0.015)
    assert np.mean(null) == pytest.approx(np.mean(simulated), abs=0.004)
    np.testing.assert_array_equal(null, near_copy_null_shares(num_holdout, num_generated))  # fixed seed: deterministic


@pytest.mark.parametrize("chunk_elements", [2**22, 64, 7])
def test_nearest_distances_match_numpy_in_any_chunking(chunk_elements):
    rng = np.random.default_rng(0)
    queries = rng.integers(0, 256, (37, 12), dtype=np.uint8)
    references = rng.integers(0, 256, (23, 12), dtype=np.uint8)
    references[5] = queries[3]  # an exact copy must measure 0
    distances, indices, reverse = nearest_neighbours(queries, references, k=2, scale=1 / 255, chunk_elements=chunk_elements)
    full = np.linalg.norm(queries[:, None].astype(float) - references[None].astype(float), axis=-1) / 255
    expected = np.sort(full, axis=1)[:, :2]
    np.testing.assert_allclose(distances, expected, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(reverse, full.min(axis=0), rtol=1e-12, atol=1e-9)  # each reference's closest query
    np.testing.assert_allclose(np.take_along_axis(full, indices, 1), expected, rtol=1e-12, atol=1e-9)
    assert distances[3, 0] < 1e-6 and indices[3, 0] == 5


def test_exact_copies_of_large_faces_measure_zero():
    """float64 chunks: no |x|^2 + |y|^2 - 2xy cancellation noise on 64x64x3 faces."""
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (4, 64 * 64 * 3), dtype=np.uint8)
    distances, indices = nearest_distances(faces, faces, k=1, scale=1 / 255)
    assert distances.max() < 1e-5 and indices[:, 0].tolist() == [0, 1, 2, 3]


def test_nearest_distances_need_k_references():
    with pytest.raises(FaceganError, match="at least 2 reference"):
        nearest_distances(np.zeros((3, 4)), np.zeros((1, 4)), k=2)


def test_nndr():
    ratio = nearest_neighbour_ratio(np.array([[1.0, 2.0], [0.0, 0.0], [0.0, 3.0], [2.0, 2.0]]))
    np.testing.assert_allclose(ratio, [0.5, 0.0, 0.0, 1.0])
    assert not math.isnan(ratio.sum())
