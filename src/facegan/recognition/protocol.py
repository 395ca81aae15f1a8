"""The LFW verification protocol on pair scores (higher = more alike), and its ROC figure.

Given one score per pair, whether the pair is one person, and the pair's fold (LFW view 2 has ten):

- accuracy: for each fold, the threshold that maximises accuracy on the *other* folds is applied to
  the held-out one; the mean and standard deviation of the ten held-out accuracies are reported
  (std with ddof=0, as facenet and InsightFace print it);
- over all pairs: the ROC curve, its AUC, the equal error rate, and the true-accept rate at false-accept
  rates 1e-1, 1e-2 and 1e-3.

A pair is called "same" when `score >= threshold`. The candidate thresholds are the midpoints between
neighbouring distinct training scores plus one below and one above them all (one spread of the scores
away), so a held-out score that equals a training score is not cut off by a threshold placed exactly on
it (a threshold at a score generalises worse: on [3 same, 1 different] it would reject a held-out 2).
Among equally accurate candidates the middle one in score order is taken; counts are exact integers,
so ties in accuracy are exact. AUC, EER and TAR depend only on the order of the scores (any strictly
increasing transform leaves them unchanged); the fold accuracies are unchanged by any increasing affine
map (a scale, a shift, a distance d turned into a similarity c - d) since midpoints move with the scores.
No torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from facegan.errors import FaceganError

__all__ = ["FARS", "ProtocolResult", "best_threshold", "check_folds", "equal_error_rate", "evaluate_protocol", "roc_figure_png", "roc_points",
           "tar_at_far"]

FARS = (1e-1, 1e-2, 1e-3)
"""The false-accept rates at which the true-accept rate is read (the keys of `tar_at_far`: "0.1", "0.01", "0.001")."""


def _far_key(far: float) -> str:
    return f"{far:g}"


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy): the threshold (`same` when score >= it) with the highest accuracy on these pairs.

    Candidates: the midpoints between neighbouring distinct scores, and one spread of the scores below
    the lowest and above the highest (everything "same", everything "different"); among equally
    accurate candidates the middle one in score order (lower middle for an even count).
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if scores.size == 0:
        raise FaceganError("no pairs to choose a verification threshold on")
    distinct = np.unique(scores)  # ascending
    # One spread beyond the extremes keeps thresholds finite and moves with any affine map of the
    # scores; when every score is equal there is no spread to take, and "accept all" / "reject all"
    # are the thresholds -inf / +inf (a made-up spread of 1 would cut held-out scores arbitrarily).
    spread = float(distinct[-1] - distinct[0]) or np.inf
    candidates = np.concatenate([[distinct[0] - spread], (distinct[:-1] + distinct[1:]) / 2.0, [distinct[-1] + spread]])
    same_sorted = np.sort(scores[same])
    different_sorted = np.sort(scores[~same])
    # true accepts: same pairs with score >= t; true rejects: different pairs with score < t.
    true_accepts = same_sorted.size - np.searchsorted(same_sorted, candidates, side="left")
    true_rejects = np.searchsorted(different_sorted, candidates, side="left")
    correct = true_accepts + true_rejects  # exact integers: ties compare exactly
    best = np.flatnonzero(correct == correct.max())
    chosen = best[(len(best) - 1) // 2]
    return float(candidates[chosen]), float(correct[chosen] / scores.size)


def roc_points(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-accept rate, true-accept rate, threshold) at every distinct score, from (0, 0) at +inf.

    The same points as `sklearn.metrics.roc_curve(same, scores, drop_intermediate=False)`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    num_same, num_different = int(same.sum()), int((~same).sum())
    if num_same == 0 or num_different == 0:
        raise FaceganError(
            f"the ROC needs both same-person and different-person pairs; these pairs have {num_same} same and {num_different} different"
        )
    thresholds = np.unique(scores)[::-1]  # descending
    accepted_same = num_same - np.searchsorted(np.sort(scores[same]), thresholds, side="left")
    accepted_different = num_different - np.searchsorted(np.sort(scores[~same]), thresholds, side="left")
    far = np.concatenate([[0.0], accepted_different / num_different])
    tar = np.concatenate([[0.0], accepted_same / num_same])
    return far, tar, np.concatenate([[np.inf], thresholds])


def tar_at_far(far: np.ndarray, tar: np.ndarray, target: float) -> float:
    """The highest true-accept rate among ROC points whose false-accept rate is at most `target`."""
    return float(np.max(tar[far <= target + 1e-12]))  # far starts at 0, so never empty


def equal_error_rate(far: np.ndarray, tar: np.ndarray) -> float:
    """Where the false-accept rate equals the false-reject rate (1 - TAR), linearly interpolated on the ROC."""
    gap = far - (1.0 - tar)  # non-decreasing along the ROC, from -1 at (0, 0) to 1 at (1, 1)
    after = int(np.argmax(gap >= 0))
    if gap[after] == 0 or after == 0:
        return float(far[after])
    before = after - 1
    fraction = -gap[before] / (gap[after] - gap[before])
    return float(far[before] + fraction * (far[after] - far[before]))


def _auc(far: np.ndarray, tar: np.ndarray) -> float:
    # The trapezoid under the step-free ROC: what roc_auc_score gives (ties count one half).
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0))


@dataclass
class ProtocolResult:
    """What `evaluate_protocol` measured; `to_dict()` is the JSON record (without the ROC arrays)."""

    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: list[float]
    fold_thresholds: list[float]
    folds: list[int]
    auc: float
    eer: float
    tar_at_far: dict[str, float]
    num_pairs: int
    num_same: int
    num_different: int
    far: np.ndarray = field(repr=False)
    tar: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy_mean": self.accuracy_mean,
            "accuracy_std": self.accuracy_std,
            "auc": self.auc,
            "eer": self.eer,
            "tar_at_far": dict(self.tar_at_far),
            "num_pairs": self.num_pairs,
            "num_same": self.num_same,
            "num_different": self.num_different,
            "folds": [
                {"fold": fold, "accuracy": accuracy, "threshold": threshold if np.isfinite(threshold) else None}  # None: accept/reject all
                for fold, accuracy, threshold in zip(self.folds, self.fold_accuracies, self.fold_thresholds)
            ],
        }


def check_folds(fold: np.ndarray) -> np.ndarray:
    """The distinct folds; fewer than two is one FaceganError line (`verify` calls it before embedding anything)."""
    fold_ids = np.unique(np.asarray(fold))
    if fold_ids.size < 2:
        raise FaceganError(
            f"the verification protocol needs at least 2 folds (a threshold is chosen on the others), the pairs have {fold_ids.size}; "
            "write pairs with `facegan data pairs DATASET --folds 10`"
        )
    return fold_ids


def evaluate_protocol(scores: np.ndarray, same: np.ndarray, fold: np.ndarray, fars: Sequence[float] = FARS) -> ProtocolResult:
    """The LFW protocol (module docstring) on one score per pair; bad inputs are one FaceganError line."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    same = np.asarray(same).reshape(-1)
    fold = np.asarray(fold).reshape(-1)
    if not (scores.size == same.size == fold.size):
        raise FaceganError(f"scores, same and fold must have one length each, got {scores.size}, {same.size} and {fold.size}")
    if scores.size == 0:
        raise FaceganError("no pairs to evaluate; the pairs file is empty")
    if same.dtype != bool:
        if not np.isin(same, (0, 1)).all():
            raise FaceganError("'same' must be true/false (or 0/1) for every pair")
        same = same.astype(bool)
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise FaceganError(
            f"{bad.size} of {scores.size} pair scores are not finite numbers (first: pair {int(bad[0]) + 1}, {scores[bad[0]]}); "
            "the recogniser gave NaN/inf descriptors, so no threshold can be chosen; check its input images and weights"
        )
    fold_ids = check_folds(fold)
    far, tar, _ = roc_points(scores, same)
    accuracies, thresholds = [], []
    for held_out in fold_ids:
        test = fold == held_out
        threshold, _ = best_threshold(scores[~test], same[~test])
        accuracies.append(float(np.mean((scores[test] >= threshold) == same[test])))
        thresholds.append(threshold)
    return ProtocolResult(
        accuracy_mean=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies)),
        fold_accuracies=accuracies,
        fold_thresholds=thresholds,
        folds=[int(value) for value in fold_ids],
        auc=_auc(far, tar),
        eer=equal_error_rate(far, tar),
        tar_at_far={_far_key(value): tar_at_far(far, tar, value) for value in fars},
        num_pairs=int(scores.size),
        num_same=int(same.sum()),
        num_different=int((~same).sum()),
        far=far,
        tar=tar,
    )


def roc_figure_png(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str = "Verification ROC") -> bytes:
    """ROC curves (label, FAR, TAR) on a log FAR axis, the FARs of `tar_at_far` marked, as PNG bytes."""
    from facegan.plots import figure_png, plt

    figure, axes = plt.subplots(figsize=(5, 3.8))
    for label, far, tar in curves:
        far = np.asarray(far, dtype=np.float64)
        visible = far > 0  # a log axis cannot show FAR 0; the curve starts at the first accepted impostor
        axes.step(far[visible], np.asarray(tar)[visible], where="post", label=label)
    for value in FARS:
        axes.axvline(value, color="gray", linestyle=":", linewidth=0.8)
    axes.set_xscale("log")
    axes.set(xlim=(min(FARS) / 2, 1.0), ylim=(0.0, 1.01), xlabel="false accept rate (log)", ylabel="true accept rate", title=title)
    axes.grid(alpha=0.3)
    if curves:
        axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure_png(figure)
