"""The LFW protocol against a brute-force threshold search and scikit-learn's ROC functions."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score, roc_curve

from facegan.errors import FaceganError
from facegan.recognition.protocol import best_threshold, evaluate_protocol, roc_figure_png, roc_points


def _pairs(seed: int, num_folds: int = 10, per_fold: int = 60, separation: float = 1.0, rounding: int | None = None):
    generator = np.random.default_rng(seed)
    same = np.tile(np.repeat([True, False], per_fold // 2), num_folds)
    fold = np.repeat(np.arange(num_folds), per_fold)
    scores = generator.normal(size=same.size) + separation * same
    if rounding is not None:  # coarse scores: many ties, within and across folds
        scores = np.round(scores, rounding)
    return scores, same, fold


def _brute_accuracy(scores, same, threshold) -> float:
    return sum((score >= threshold) == label for score, label in zip(scores, same)) / len(scores)


def _brute_best(scores, same) -> tuple[float, float]:
    """Every distinct score, every midpoint and both ends, one by one; the middle of the best midpoint/end (in order)."""
    values = sorted(set(float(s) for s in scores))
    spread = (values[-1] - values[0]) or 1.0
    candidates = [values[0] - spread] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + spread]
    everything = sorted(set(candidates + values))
    best_anywhere = max(_brute_accuracy(scores, same, t) for t in everything)
    accuracies = [_brute_accuracy(scores, same, t) for t in candidates]
    assert max(accuracies) == best_anywhere  # a threshold at a score does no better on the training pairs
    tied = [t for t, a in zip(candidates, accuracies) if a == best_anywhere]
    return tied[(len(tied) - 1) // 2], best_anywhere


@pytest.mark.parametrize("seed,rounding", [(0, None), (1, 1), (2, 0)])
def test_fold_accuracies_match_a_brute_force_threshold_search(seed, rounding):
    scores, same, fold = _pairs(seed, rounding=rounding)
    result = evaluate_protocol(scores, same, fold)
    expected_accuracies, expected_thresholds = [], []
    for held_out in range(10):
        train = fold != held_out
        threshold, _ = _brute_best(scores[train], same[train])
        expected_thresholds.append(threshold)
        expected_accuracies.append(_brute_accuracy(scores[~train], same[~train], threshold))
    assert result.fold_thresholds == expected_thresholds
    assert result.fold_accuracies == pytest.approx(expected_accuracies, abs=1e-12)
    assert result.accuracy_mean == pytest.approx(np.mean(expected_accuracies), abs=1e-12)
    assert result.accuracy_std == pytest.approx(np.std(expected_accuracies), abs=1e-12)
    assert 0.6 < result.accuracy_mean < 0.8  # separation 1 sigma: about 69%


def test_best_threshold_counts_ties_exactly():
    # Scores tied across labels: at 0.5 two same and one different pair; no threshold splits them.
    scores = np.array([0.1, 0.5, 0.5, 0.5, 0.9, 0.2])
    same = np.array([False, True, True, False, True, False])
    threshold, accuracy = best_threshold(scores, same)
    assert (threshold, accuracy) == (pytest.approx(0.35), 5 / 6)
    assert _brute_best(scores, same) == (threshold, accuracy)


def test_a_held_out_impostor_tied_with_a_genuine_pair_is_accepted():
    scores = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    same = np.array([False, True, False, True, False, True])
    fold = np.array([0, 0, 1, 1, 2, 2])
    result = evaluate_protocol(scores, same, fold)
    assert result.fold_thresholds == [0.5, 0.5, 0.5]
    assert result.fold_accuracies == [1.0, 1.0, 0.5]  # fold 2's impostor at 1.0 is accepted with its genuine pair


@pytest.mark.parametrize("seed,rounding", [(3, None), (4, 1)])
def test_roc_auc_and_tar_match_scikit_learn(seed, rounding):
    scores, same, fold = _pairs(seed, per_fold=400, separation=2.0, rounding=rounding)
    result = evaluate_protocol(scores, same, fold)
    fpr, tpr, thresholds = roc_curve(same, scores, drop_intermediate=False)
    far, tar, ours = roc_points(scores, same)
    np.testing.assert_allclose(far, fpr, atol=1e-15)
    np.testing.assert_allclose(tar, tpr, atol=1e-15)
    np.testing.assert_array_equal(ours[1:], thresholds[1:])
    assert result.auc == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    for key, target in (("0.1", 1e-1), ("0.01", 1e-2), ("0.001", 1e-3)):
        assert result.tar_at_far[key] == pytest.approx(tpr[fpr <= target + 1e-12].max(), abs=1e-15)
    assert 0.5 < result.tar_at_far["0.1"] < 0.9 and result.tar_at_far["0.001"] < result.tar_at_far["0.01"]


def test_eer_is_where_false_accepts_equal_false_rejects():
    scores, same, _ = _pairs(5, per_fold=1000, separation=2.0)
    far, tar, _ = roc_points(scores, same)
    fold = np.repeat(np.arange(10), 1000)
    eer = evaluate_protocol(scores, same, fold).eer
    # Brute force over a fine grid of thresholds: FAR and FRR cross at the EER (2 sigma apart: Phi(-1) = 0.1587).
    grid = np.linspace(scores.min(), scores.max(), 20001)
    false_accepts = np.array([(scores[~same] >= t).mean() for t in grid])
    false_rejects = np.array([(scores[same] < t).mean() for t in grid])
    crossing = np.argmin(np.abs(false_accepts - false_rejects))
    assert eer == pytest.approx((false_accepts[crossing] + false_rejects[crossing]) / 2, abs=2e-3)
    assert eer == pytest.approx(0.1587, abs=0.015)


def test_eer_of_separable_scores_is_zero_and_of_reversed_ones_is_one():
    same = np.array([True, True, False, False])
    fold = np.array([0, 1, 0, 1])
    perfect = evaluate_protocol(np.array([2.5, 3.0, 0.0, 1.0]), same, fold)
    assert (perfect.eer, perfect.auc, perfect.accuracy_mean, perfect.tar_at_far["0.001"]) == (0.0, 1.0, 1.0, 1.0)
    reversed_ = evaluate_protocol(np.array([0.0, 1.0, 2.0, 3.0]), same, fold)
    assert (reversed_.eer, reversed_.auc) == (1.0, 0.0)


scores_strategy = st.lists(st.integers(-30, 30), min_size=8, max_size=60)


@settings(max_examples=60, deadline=None)
@given(values=scores_strategy, labels=st.randoms(use_true_random=False), transform=st.sampled_from(["affine", "exp", "cube", "neg-dist"]))
def test_increasing_transforms_leave_the_protocol_unchanged(values, labels, transform):
    """Rank measures under any strictly increasing map; fold accuracies under affine ones (exact on integers)."""
    scores = np.array(values, dtype=np.float64)
    same = np.array([labels.random() < 0.5 for _ in values])
    same[0], same[1] = True, False
    fold = np.arange(len(values)) % 3
    moved = {"affine": lambda x: 3.0 * x + 7.0, "exp": lambda x: np.exp(x / 4), "cube": lambda x: x**3 + x,
             "neg-dist": lambda x: -(100.0 - x)}[transform](scores)
    before, after = evaluate_protocol(scores, same, fold), evaluate_protocol(moved, same, fold)
    if transform in ("affine", "neg-dist"):
        assert after.fold_accuracies == before.fold_accuracies
    assert after.auc == pytest.approx(before.auc, abs=1e-12)
    assert after.eer == pytest.approx(before.eer, abs=1e-12)
    assert after.tar_at_far == before.tar_at_far
    assert 0.0 <= before.accuracy_mean <= 1.0 and 0.0 <= before.eer <= 1.0


@settings(max_examples=40, deadline=None)
@given(values=scores_strategy, labels=st.randoms(use_true_random=False))
def test_auc_plus_flipped_auc_is_one_and_pair_order_does_not_matter(values, labels):
    scores = np.array(values, dtype=np.float64)
    same = np.array([labels.random() < 0.5 for _ in values])
    same[0], same[1] = True, False
    fold = np.arange(len(values)) % 2
    result = evaluate_protocol(scores, same, fold)
    assert result.auc + evaluate_protocol(-scores, same, fold).auc == pytest.approx(1.0, abs=1e-12)
    order = np.random.default_rng(len(values)).permutation(len(values))
    shuffled = evaluate_protocol(scores[order], same[order], fold[order])
    assert shuffled.fold_accuracies == result.fold_accuracies and shuffled.auc == pytest.approx(result.auc, abs=1e-12)


def test_non_finite_scores_are_one_line():
    scores, same, fold = _pairs(6)
    scores[7] = np.nan
    with pytest.raises(FaceganError, match=r"1 of 600 pair scores are not finite numbers \(first: pair 8"):
        evaluate_protocol(scores, same, fold)


@pytest.mark.parametrize("same,fold,message", [
    ([True, True, True, True], [0, 0, 1, 1], "needs both same-person and different-person pairs"),
    ([True, False, True, False], [0, 0, 0, 0], "at least 2 folds"),
])
def test_unusable_pairs_are_refused(same, fold, message):
    with pytest.raises(FaceganError, match=message):
        evaluate_protocol(np.arange(4.0), np.array(same), np.array(fold))


def test_record_and_figure():
    scores, same, fold = _pairs(7)
    result = evaluate_protocol(scores, same, fold)
    record = result.to_dict()
    assert set(record["tar_at_far"]) == {"0.1", "0.01", "0.001"}
    assert (record["num_pairs"], record["num_same"], record["num_different"], len(record["folds"])) == (600, 300, 300, 10)
    png = roc_figure_png([("test", result.far, result.tar)])
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_all_equal_training_scores_accept_or_reject_everything_whatever_the_score_scale():
    # Found by hypothesis: with every training score equal, a made-up spread of 1 put "accept all" at
    # score - 1, which rejected a held-out score of -1 but not its affine image; now it is -inf / +inf.
    scores = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0])
    same = np.array([True, False, True, True, False, True, True, True])
    fold = np.array([0, 0, 1, 1, 0, 0, 1, 1]) * 0 + np.arange(8) % 2
    for moved in (scores, 3.0 * scores + 7.0, scores * 1000.0 - 5.0):
        result = evaluate_protocol(moved, same, fold)
        assert result.fold_accuracies == evaluate_protocol(scores, same, fold).fold_accuracies
        assert all(entry["threshold"] is None or np.isfinite(entry["threshold"]) for entry in result.to_dict()["folds"])
