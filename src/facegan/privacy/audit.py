"""Privacy audit: does a generator give away the faces it was trained on?

    inputs     generated faces (a run, an export, any object with `.sample(seeds)`, or a folder of
               images from any generator), the training set (members) and a holdout set (non-members)
    features   pixel space (L2 on [0, 1] values) and face space (dlib's 128-D descriptors), once per set
    checks     memorisation   DCR (distance to the closest training face), NNDR (closest / second
                              closest) and near copies: generated -> train, against holdout -> train
               membership     LOGAN (the discriminator's logit, white box, runs only) and GAN-Leaks
                              (minus the distance to the closest generated face, black box):
                              ROC AUC and TPR at 1% / 0.1% FPR
               identity       share of generated faces dlib calls a training person, against the share
                              of real holdout faces (the natural lookalike rate)
    result     AuditResult -> audit.json + audit_*.png; `facegan.report.privacy_sections` puts it in the report card

Absolute distances mean nothing on their own, so every check is read against the holdout set: what a
real face the model never saw scores. A check is flagged only when it is past a practical line (AUC
0.6, 10% near copies, +5 points of identity matches) *and* a model that leaks nothing would land there
by chance less than 1% of the time at these set sizes (p < 0.01), so a small audit does not cry wolf
and a large one does not excuse a small but certain leak.
Controls whose answer is known (replayed training faces must be flagged, outside faces must not) live
in `audit_controls.py`, the tests and `benchmarks/privacy_audit_controls.py`.
"""
from __future__ import annotations

import functools
import hashlib
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np
from torch import nn

from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan.metrics.features import check_device
from facegan.privacy.audit_figures import AuditFigure, closest_pairs_figure, distance_figure, roc_figure
from facegan.privacy.audit_inputs import check_samples_folder, discriminator_scores, load_run_discriminator, load_sample_images
from facegan.privacy.audit_metrics import (
    auc_chance_sd,
    auc_p_value,
    near_copy_null_shares,
    nearest_distances,
    nearest_neighbours,
    nearest_neighbour_ratio,
    reduce_curve,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)
from facegan.privacy.audit_result import (
    AUDIT_NAME,
    AttackResult,
    AuditResult,
    IdentityResult,
    MemorisationResult,
    load_audit,
)

__all__ = [
    "AUDIT_NAME",
    "FEATURE_SPACES",
    "AttackResult",
    "AuditResult",
    "IdentityResult",
    "MemorisationResult",
    "audit_generator",
    "audit_samples",
    "discriminator_scores",
    "load_audit",
    "load_run_discriminator",
    "load_sample_images",
]

FEATURE_SPACES = ("pixel", "face")
DEFAULT_NUM_SAMPLES = 2000
FPR_LEVELS = (0.01, 0.001)

NEAR_COPY_QUANTILE = 0.05
"""A generated face is a near copy when it is closer to a training face than 95% of real holdout faces are."""
MIA_AUC_WARNING = 0.6
"""Attack AUC above this (or as far below 0.5: a flipped rule leaks as much) is a warning; 0.5 is guessing."""
NEAR_COPY_WARNING = 0.10
"""Near-copy share above this (twice the 5% a new real face scores by construction) is a warning."""
IDENTITY_EXCESS_WARNING = 0.05
"""Identity match rate more than 5 points above the holdout's lookalike rate is a warning."""
SIGNIFICANCE = 0.01
"""A check is flagged only when a model that leaks nothing would show a value this extreme less than 1% of
the time; over the audit's five checks that is at most ~5% false alarms (Bonferroni)."""
NUM_CLOSEST_PAIRS = 8


class SampleSource(Protocol):
    """Anything that makes faces by seed: facegan's Generator, a control, a wrapper around another model."""

    def sample(self, seeds: Iterable[int]) -> np.ndarray: ...


# ---- inputs and features -------------------------------------------------------------------------
def _as_dataset(data: FaceDataset | np.ndarray | str | os.PathLike, what: str) -> FaceDataset:
    if isinstance(data, FaceDataset):
        return data
    if isinstance(data, np.ndarray):
        return FaceDataset(np.asarray(data, dtype=np.uint8))
    try:
        return FaceDataset.load(data)
    except FaceganError as error:
        raise FaceganError(f"{what}: {error}") from None


FACE_RECOGNISER = "dlib-resnet"
"""The registered recogniser (`faces.recognisers`) whose descriptors are the face space and whose match rule is the identity check."""


@functools.lru_cache(maxsize=2)
def _face_recogniser(device: str):
    from facegan.faces.recognisers import get_recogniser

    recogniser = get_recogniser(FACE_RECOGNISER, device=device)
    # Nearest faces are found by Euclidean distance (audit_metrics), so the rule must measure the same way.
    if recogniser.match.metric != "euclidean":
        raise FaceganError(f"the audit's face space is Euclidean, but recogniser {FACE_RECOGNISER!r} matches by {recogniser.match.metric} distance")
    return recogniser


# Descriptors of real sets keyed by content hash (and device: GPU kernels round differently): a second
# audit against the same train/holdout (another checkpoint, a control) reuses them, in this process
# only. Generated faces are never cached.
_FACE_CACHE: dict[tuple[str, str], np.ndarray] = {}
_FACE_CACHE_ENTRIES = 8


def _face_descriptors(images: np.ndarray, device: str, content_hash: str | None = None) -> np.ndarray:
    key = (content_hash, str(device))
    if content_hash is not None and key in _FACE_CACHE:
        return _FACE_CACHE[key]
    descriptors = _face_recogniser(str(device)).embed(images)  # (N, 128) float32
    if content_hash is not None:
        if len(_FACE_CACHE) >= _FACE_CACHE_ENTRIES:
            _FACE_CACHE.pop(next(iter(_FACE_CACHE)))  # oldest first
        _FACE_CACHE[key] = descriptors
    return descriptors


@dataclass
class _SpaceFeatures:
    """One feature space's rows for the three sets, and the factor that turns row distances into reported ones."""

    train: np.ndarray
    holdout: np.ndarray
    generated: np.ndarray
    scale: float


def _features(space: str, train: FaceDataset, holdout: FaceDataset, generated: np.ndarray, device: str) -> _SpaceFeatures:
    if space == "pixel":
        # uint8 rows (N, H*W*C): distances are taken in float64 chunk by chunk, then scaled to [0, 1] units.
        flat = lambda images: np.asarray(images).reshape(len(images), -1)  # noqa: E731
        return _SpaceFeatures(flat(train.images), flat(holdout.images), flat(generated), 1.0 / 255.0)
    return _SpaceFeatures(
        _face_descriptors(np.asarray(train.images), device, train.content_hash),
        _face_descriptors(np.asarray(holdout.images), device, holdout.content_hash),
        _face_descriptors(generated, device),
        1.0,
    )


# ---- checks --------------------------------------------------------------------------------------
def _summary(values: np.ndarray) -> dict[str, float]:
    return {"min": float(values.min()), "p5": float(np.percentile(values, 5)), "median": float(np.median(values)), "mean": float(values.mean())}


def _closest_pairs(distances: np.ndarray, train_indices: np.ndarray, count: int) -> list[list[float]]:
    """The closest (generated, training) pairs, at most one per training face so one copied face does not fill the panel."""
    pairs, seen = [], set()
    for gen_index in np.argsort(distances, kind="stable"):
        train_index = int(train_indices[gen_index])
        if train_index in seen:
            continue
        seen.add(train_index)
        pairs.append([int(gen_index), train_index, float(distances[gen_index])])
        if len(pairs) == count:
            break
    return pairs


@dataclass
class _Distances:
    """Nearest-training-face distances for one space, kept for the attacks, identity check and figures."""

    generated: np.ndarray  # (G, 2) closest and second closest training face
    generated_index: np.ndarray  # (G, 2)
    holdout: np.ndarray  # (H, 2)
    holdout_index: np.ndarray  # (H, 2)
    train_to_generated: np.ndarray  # (T,) each training face's closest generated face, for GAN-Leaks


def _memorisation(space: str, features: _SpaceFeatures) -> tuple[MemorisationResult, _Distances]:
    # One pass over generated x train gives both directions: DCR by row, GAN-Leaks member scores by column.
    generated, generated_index, train_to_generated = nearest_neighbours(features.generated, features.train, k=2, scale=features.scale)
    holdout, holdout_index = nearest_distances(features.holdout, features.train, k=2, scale=features.scale)
    dcr_generated, dcr_holdout = generated[:, 0], holdout[:, 0]
    threshold = float(np.percentile(dcr_holdout, 100 * NEAR_COPY_QUANTILE))
    share = float(np.mean(dcr_generated < threshold))
    # The 5% line is itself estimated from the holdout set, so chance moves the share more than
    # binomial noise alone: the null accounts for both (see near_copy_null_shares).
    null = near_copy_null_shares(len(dcr_holdout), len(dcr_generated), NEAR_COPY_QUANTILE)
    p_value = float(np.mean(null >= share - 1e-12))
    result = MemorisationResult(
        space=space,
        dcr_generated=_summary(dcr_generated),
        dcr_holdout=_summary(dcr_holdout),
        nndr_generated_median=float(np.median(nearest_neighbour_ratio(generated))),
        nndr_holdout_median=float(np.median(nearest_neighbour_ratio(holdout))),
        near_copy_threshold=threshold,
        near_copy_share=share,
        near_copy_share_holdout=float(np.mean(dcr_holdout < threshold)),
        near_copy_expected=NEAR_COPY_QUANTILE,
        near_copy_chance_limit=float(np.quantile(null, 1 - SIGNIFICANCE)),
        near_copy_p_value=p_value,
        flagged=share > NEAR_COPY_WARNING and p_value < SIGNIFICANCE,
        closest_pairs=_closest_pairs(dcr_generated, generated_index[:, 0], NUM_CLOSEST_PAIRS),
    )
    return result, _Distances(generated, generated_index, holdout, holdout_index, train_to_generated)


def membership_attack(attack: str, space: str, member_scores: np.ndarray, nonmember_scores: np.ndarray) -> AttackResult:
    """Evaluate scores where higher means "member": exact ROC, AUC, TPR at 1% and 0.1% FPR, chance spread."""
    fpr, tpr, _ = roc_curve(member_scores, nonmember_scores)
    auc = roc_auc(fpr, tpr)
    p_value = auc_p_value(auc, len(member_scores), len(nonmember_scores))
    roc_fpr, roc_tpr = reduce_curve(fpr, tpr)
    return AttackResult(
        attack=attack,
        space=space,
        auc=auc,
        tpr_at_fpr={f"{level:g}": tpr_at_fpr(fpr, tpr, level) for level in FPR_LEVELS},
        num_members=len(member_scores),
        num_nonmembers=len(nonmember_scores),
        chance_sd=auc_chance_sd(len(member_scores), len(nonmember_scores)),
        p_value=p_value,
        min_fpr=1.0 / len(nonmember_scores),
        # Far below 0.5 leaks too: an attacker who knows the model flips the rule.
        flagged=abs(auc - 0.5) > MIA_AUC_WARNING - 0.5 and p_value < SIGNIFICANCE,
        roc_fpr=roc_fpr,
        roc_tpr=roc_tpr,
    )


def _gan_leaks(space: str, features: _SpaceFeatures, distances: _Distances) -> AttackResult:
    """Full black-box GAN-Leaks (Chen et al. 2020): a face is a member if some generated face is close to it."""
    nonmember_distance, _ = nearest_distances(features.holdout, features.generated, k=1, scale=features.scale)
    return membership_attack("gan_leaks", space, -distances.train_to_generated, -nonmember_distance[:, 0])


def _identity_leakage(train: FaceDataset, holdout: FaceDataset, face: _Distances, generated_images: np.ndarray, device: str = "cpu",
                      num_top: int = 5) -> tuple[IdentityResult, list[str]]:
    """Identity matches from the face-space distances already computed, by the recogniser's match rule (dlib: < 0.6).

    Only images in which dlib's detector finds a face can show a person: a featureless blob lands near
    the recogniser's mean descriptor and would "match" everyone, which is no re-identification. Both
    sides get the same rule (holdout faces that dlib cannot find do not count either).
    """
    from scipy.stats import fisher_exact

    from facegan.faces.detection import FaceDetector

    rule = _face_recogniser(str(device)).match
    with FaceDetector() as detector:
        generated_is_face = detector.detect(generated_images)  # (G,) bool
        holdout_is_face = detector.detect(np.asarray(holdout.images))  # (H,) bool
    generated_match = rule.matches(face.generated[:, 0]) & generated_is_face
    holdout_match = rule.matches(face.holdout[:, 0]) & holdout_is_face
    generated_rate, holdout_rate = float(generated_match.mean()), float(holdout_match.mean())
    excess = generated_rate - holdout_rate
    # Fisher's exact test, one-sided: rates near 0 or 1 on a few holdout faces are exactly where the
    # normal approximation claims significance it does not have (98% of 200 vs 90% of 20: z gives
    # p = 0.008, the exact test 0.07).
    table = [[int(generated_match.sum()), int((~generated_match).sum())], [int(holdout_match.sum()), int((~holdout_match).sum())]]
    p_value = float(fisher_exact(table, alternative="greater").pvalue)
    result = IdentityResult(
        threshold=rule.threshold,
        generated_match_rate=generated_rate,
        holdout_match_rate=holdout_rate,
        excess=excess,
        p_value=p_value,
        num_generated=len(generated_match),
        num_holdout=len(holdout_match),
        flagged=excess > IDENTITY_EXCESS_WARNING and p_value < SIGNIFICANCE,
        labelled=train.has_identities,
    )
    notes = []
    if train.has_identities:
        identity = np.asarray(train.identity)
        names = train.identity_names

        def matched(match: np.ndarray, index: np.ndarray) -> np.ndarray:
            people = identity[index[match, 0]]
            return people[people >= 0]

        generated_people = matched(generated_match, face.generated_index)
        result.num_train_identities = int(len(np.unique(identity[identity >= 0])))
        result.identities_matched_by_generated = int(len(np.unique(generated_people)))
        result.identities_matched_by_holdout = int(len(np.unique(matched(holdout_match, face.holdout_index))))
        counts = Counter(int(person) for person in generated_people).most_common(num_top)
        result.top_identities = [[names[person] if 0 <= person < len(names) else person, count] for person, count in counts]
        if holdout.has_identities:
            shared = np.intersect1d(identity[identity >= 0], holdout.identity[holdout.identity >= 0])
            if len(shared):
                notes.append(
                    f"the holdout set shares {len(shared)} {'person' if len(shared) == 1 else 'people'} with the training set, so its "
                    "identity match rate counts true "
                    "re-identifications, not only lookalikes; split with `facegan data split DATASET --by identity` for a lookalike baseline"
                )
    return result, notes


# ---- the audit -----------------------------------------------------------------------------------
def _check_spaces(features: Iterable[str]) -> list[str]:
    spaces = list(dict.fromkeys(features))
    unknown = [space for space in spaces if space not in FEATURE_SPACES]
    if unknown or not spaces:
        raise FaceganError(f"unknown feature space {unknown[0] if unknown else '(none)'!r}; choose from {', '.join(FEATURE_SPACES)}")
    return spaces


def _check_sets(train: FaceDataset, holdout: FaceDataset) -> None:
    """Refuse sets the audit cannot read: too small, of different sizes, or sharing faces.

    A holdout face that is also a training face counts as a non-member that was trained on: a model
    that copies its training set then looks like one that leaks nothing (the same set passed twice
    gives a perfect memoriser a clean verdict), so any overlap is refused, not noted.
    """
    if len(train) < 2:
        raise FaceganError(f"the training set has {len(train)} face(s); the audit needs at least 2 (closest and second closest)")
    if len(holdout) < 2:
        raise FaceganError(f"the holdout set has {len(holdout)} face(s); the audit needs at least 2 (make one with `facegan data split`)")
    if train.images.shape[1:] != holdout.images.shape[1:]:
        raise FaceganError(
            f"train faces are {train.resolution}px x {train.channels} channel(s) but holdout faces are {holdout.resolution}px x "
            f"{holdout.channels}; prepare both at the same size, e.g. with `facegan data split`"
        )
    shared = len(holdout) if holdout.content_hash == train.content_hash else _num_shared_rows(holdout, train)
    if shared:
        raise FaceganError(
            f"--holdout must be disjoint from --train: {shared} of its {len(holdout)} images are in the training set; "
            "split the data with `facegan data split DATASET` and audit against its -holdout set"
        )


def _num_shared_rows(holdout: FaceDataset, train: FaceDataset) -> int:
    """How many holdout images are pixel-identical to some training image."""
    train_rows = _row_hashes(np.asarray(train.images))
    return sum(digest in train_rows for digest in _row_digests(np.asarray(holdout.images)))


def _row_digests(images: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest() for image in images]


def _row_hashes(images: np.ndarray) -> set[bytes]:
    return set(_row_digests(images))


def _data_notes(train: FaceDataset, holdout: FaceDataset, trained_on: str | None) -> tuple[dict[str, Any], list[str]]:
    notes = []
    shared = 0  # overlapping sets are refused up front (_check_sets); the field stays in audit.json for its readers
    matches = None
    if trained_on is not None:
        matches = trained_on == train.content_hash
        if not matches:
            notes.append(f"--train (hash {train.content_hash[:12]}) is not the set this model was trained on (hash {trained_on[:12]}); "
                         "membership numbers are only meaningful against the real training set")
    if min(len(train), len(holdout)) < 100:
        notes.append(f"small sets ({len(train)} train, {len(holdout)} holdout): a blind attacker's AUC varies by "
                     f"+/-{auc_chance_sd(len(train), len(holdout)):.2f}, and TPR at 0.1% FPR needs 1000+ holdout faces to be resolved")
    data = {
        "train": {"path": str(train.path) if train.path else None, "num_images": len(train), "content_hash": train.content_hash},
        "holdout": {"path": str(holdout.path) if holdout.path else None, "num_images": len(holdout), "content_hash": holdout.content_hash},
        "resolution": train.resolution,
        "channels": train.channels,
        "holdout_in_train": shared,
        "train_is_training_set": matches,
    }
    return data, notes


class _Progress:
    """One line per stage on stderr (the audit's stages are few and long)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f"audit: {message}", file=sys.stderr, flush=True)


def _run_audit(
    generated: np.ndarray,
    train: FaceDataset,
    holdout: FaceDataset,
    spaces: list[str],
    target: dict[str, Any],
    discriminator: nn.Module | None,
    discriminator_skip: str | None,
    trained_on: str | None,
    device: str,
    progress: _Progress,
) -> AuditResult:
    data, notes = _data_notes(train, holdout, trained_on)
    skipped: dict[str, str] = {}
    memorisation: dict[str, MemorisationResult] = {}
    distances: dict[str, _Distances] = {}
    membership: list[AttackResult] = []

    if discriminator is not None:
        progress(f"discriminator scores for {len(train)} training and {len(holdout)} holdout faces")
        membership.append(membership_attack(
            "discriminator", "logit",
            discriminator_scores(discriminator, np.asarray(train.images), device=device),
            discriminator_scores(discriminator, np.asarray(holdout.images), device=device),
        ))
    else:
        skipped["discriminator"] = discriminator_skip or "no discriminator given"
    for space in spaces:
        progress(f"{space} space: features and nearest training faces")
        features = _features(space, train, holdout, generated, device)
        memorisation[space], distances[space] = _memorisation(space, features)
        membership.append(_gan_leaks(space, features, distances[space]))
    identity = None
    if "face" in distances:
        identity, identity_notes = _identity_leakage(train, holdout, distances["face"], np.asarray(generated), device)
        notes += identity_notes
    else:
        skipped["identity"] = "needs face space (--features face)"

    warnings = _warnings(memorisation, membership, identity)
    from facegan.version import __version__

    protocol = {
        "facegan_version": __version__,
        "num_generated": len(generated),
        "near_copy_quantile": NEAR_COPY_QUANTILE,
        "thresholds": {"mia_auc": MIA_AUC_WARNING, "near_copy_share": NEAR_COPY_WARNING, "identity_excess": IDENTITY_EXCESS_WARNING,
                       "significance": SIGNIFICANCE},
        "pixel_space": "Euclidean distance between images with pixel values in [0, 1]",
        "face_space": "Euclidean distance between dlib-resnet-face v1 descriptors (dlib_face_recognition_resnet_model_v1)",
        "identity_match": "closest training descriptor within 0.6 AND dlib's HOG detector finds a face in the image (blobs cannot show a person)",
        "gan_leaks": "full black box (Chen et al. 2020): score = -min distance to a generated face",
        "discriminator_attack": "LOGAN white box (Hayes et al. 2019): score = discriminator logit, eval mode, minibatch-stddev groups of 1",
    }
    result = AuditResult(
        target=target, data=data, spaces=spaces, memorisation=memorisation, membership=membership, identity=identity,
        skipped=skipped, warnings=warnings, notes=notes, readings=[], protocol=protocol,
    )
    result.readings = _readings(result)
    progress("figures")
    result.figures = _figures(result, generated, np.asarray(train.images), distances)
    return result


def _warnings(memorisation: dict[str, MemorisationResult], membership: list[AttackResult], identity: IdentityResult | None) -> list[str]:
    warnings = []
    for attack in membership:
        if attack.flagged:
            warnings.append(f"membership inference: {attack.label} reaches AUC {attack.auc:.2f} (chance 0.50 +/- {attack.chance_sd:.2f}, "
                            f"p = {attack.p_value:.2g})")
    for space, result in memorisation.items():
        if result.flagged:
            warnings.append(f"memorisation: {result.near_copy_share:.0%} of generated faces are near copies of training faces in {space} space "
                            f"(about {result.near_copy_expected:.0%} expected, up to {result.near_copy_chance_limit:.0%} by chance)")
    if identity is not None and identity.flagged:
        warnings.append(f"identity leakage: {identity.generated_match_rate:.0%} of generated faces match a training face vs "
                        f"{identity.holdout_match_rate:.0%} of real holdout faces (p = {identity.p_value:.2g})")
    return warnings


def _flagged_names(result: AuditResult) -> list[str]:
    names = [f"{attack.label} AUC {attack.auc:.2f}" for attack in result.membership if attack.flagged]
    names += [f"near copies in {space} space {memo.near_copy_share:.0%}" for space, memo in result.memorisation.items() if memo.flagged]
    if result.identity is not None and result.identity.flagged:
        names.append(f"identity matches {result.identity.generated_match_rate:.0%} vs {result.identity.holdout_match_rate:.0%}")
    return names


def _readings(result: AuditResult) -> list[str]:
    num_checks = len(result.membership) + len(result.memorisation) + (result.identity is not None)
    if result.warnings:
        readings = [f"Verdict: WARNING, {len(result.warnings)} of {num_checks} privacy checks flagged ({', '.join(_flagged_names(result))})."]
    else:
        readings = [f"Verdict: none of the {num_checks} privacy checks found memorisation or membership leakage beyond chance."]
    for attack in result.membership:
        caught = attack.tpr_at_fpr["0.01"]
        at = "1% false positives" if attack.min_fpr <= 0.01 else "no false positive (too few holdout faces to resolve 1%)"
        readings.append(
            f"MIA {attack.label}: AUC {attack.auc:.2f} (0.5 = attacker guesses, +/-{attack.chance_sd:.2f} by chance at "
            f"{attack.num_members} vs {attack.num_nonmembers} faces; above 0.6 is a warning); it catches {caught:.0%} of training faces at {at}."
        )
    for space, memo in result.memorisation.items():
        readings.append(
            f"Memorisation, {space} space: {memo.near_copy_share:.1%} of generated faces are closer to a training face than 95% of real "
            f"holdout faces are (about 5% expected, up to {memo.near_copy_chance_limit:.0%} by chance at these set sizes; above 10% is a "
            f"warning); median distance to the closest training face "
            f"{memo.dcr_generated['median']:.3g} vs {memo.dcr_holdout['median']:.3g} for holdout faces (lower for generated = closer to copies)."
        )
    if result.identity is not None:
        identity = result.identity
        readings.append(
            f"Identity: dlib calls {identity.generated_match_rate:.0%} of generated faces the same person as a training face (distance < "
            f"{identity.threshold}) vs {identity.holdout_match_rate:.0%} of real holdout faces, the natural lookalike rate (well above it is a warning)."
        )
    for part, reason in result.skipped.items():
        readings.append(f"Not run: {part} ({reason}).")
    return readings


def _figures(result: AuditResult, generated: np.ndarray, train_images: np.ndarray, distances: dict[str, _Distances]) -> dict[str, AuditFigure]:
    figures = {"roc": roc_figure([(attack.label, attack.roc_fpr, attack.roc_tpr, attack.auc) for attack in result.membership])}
    figures["distances"] = distance_figure({
        space: (distances[space].generated[:, 0], distances[space].holdout[:, 0], memo.near_copy_threshold)
        for space, memo in result.memorisation.items()
    })
    for space, memo in result.memorisation.items():
        pairs = [(int(gen), int(train), distance) for gen, train, distance in memo.closest_pairs]
        figures[f"closest_{space}"] = closest_pairs_figure(space, generated, train_images, pairs)
    return figures


def _num_samples(num_samples: int) -> int:
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise FaceganError(f"--num must be a whole number, got {num_samples!r}")
    if num_samples < 2:
        raise FaceganError(f"--num must be at least 2, got {num_samples}")
    return int(num_samples)


def estimated_memory_bytes(num_generated: int, image_shape: tuple[int, ...], spaces: Iterable[str]) -> int:
    """Peak memory the audit holds for `num_generated` faces, roughly: the faces themselves (all kept, for the
    closest-pair figures), their descriptors and nearest-face distances, plus the fixed distance blocks."""
    per_face = int(np.prod(image_shape))  # uint8 pixels
    spaces = list(spaces)
    if "face" in spaces:
        per_face += 128 * 4 + 8  # dlib descriptor, face-detector flag
    per_face += len(spaces) * (2 * 8 + 2 * 8)  # two nearest distances and indices per space
    return int(num_generated * per_face + 2 * 2**22 * 8)


def _check_memory(num_generated: int, image_shape: tuple[int, ...], spaces: Iterable[str]) -> None:
    from facegan.resources import check_fits_in_memory

    check_fits_in_memory(estimated_memory_bytes(num_generated, image_shape, spaces), f"auditing {num_generated} generated faces", "lower --num")


def audit_generator(
    model: str | os.PathLike | SampleSource,
    train: FaceDataset | str | os.PathLike,
    holdout: FaceDataset | str | os.PathLike,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    features: Iterable[str] = FEATURE_SPACES,
    discriminator: nn.Module | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> AuditResult:
    """Audit a run folder, an export folder, or any object with `.sample(seeds)`, on seeds 0..num_samples-1.

    The discriminator attack runs when `model` is a run folder with a resume state (checkpoint), or when a
    `discriminator` is passed; otherwise it is reported as skipped with the reason.
    """
    from facegan.models.export import load_generator
    from facegan.run import Run

    spaces = _check_spaces(features)
    num_samples = _num_samples(num_samples)
    check_device(device)
    train, holdout = _as_dataset(train, "--train"), _as_dataset(holdout, "--holdout")
    _check_sets(train, holdout)
    _check_memory(num_samples, train.images.shape[1:], spaces)
    report = _Progress(progress)
    discriminator_skip = None
    trained_on = None
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        located = Run.locate(path)
        export_dir = located.export_dir
        generator = load_generator(export_dir, device=device)
        run_dir = located.run.path if located.run is not None else None
        kind = "run" if Run(path).is_run() else "export"
        target = {"kind": kind, "path": str(path), "export": str(export_dir), "kimg": generator.metadata.get("kimg"),
                  "dp": generator.metadata.get("dp")}
        trained_on = generator.metadata.get("dataset_hash")
        if discriminator is None:
            if kind == "run":
                try:
                    discriminator = load_run_discriminator(run_dir)
                except FaceganError as error:
                    discriminator_skip = str(error)
            else:
                where = f" ({run_dir})" if run_dir is not None else ""
                discriminator_skip = f"an export holds only the generator; pass the run folder{where} to include the discriminator attack"
    else:
        generator = model
        target = {"kind": "generator", "path": None, "type": type(model).__name__}
        discriminator_skip = None if discriminator is not None else "no discriminator given (white-box attack needs the run folder)"
    resolution, channels = getattr(generator, "resolution", None), getattr(generator, "channels", None)
    if resolution is not None and channels is not None and (resolution, channels) != (train.resolution, train.channels):
        raise FaceganError(
            f"the model makes {resolution}px faces with {channels} channel(s) but the training set is {train.resolution}px with "
            f"{train.channels}; pass the dataset the model was trained on"
        )
    report(f"sampling {num_samples} faces (seeds 0-{num_samples - 1})")
    generated = np.asarray(generator.sample(range(num_samples)))
    if generated.dtype != np.uint8 or generated.shape[1:] != train.images.shape[1:]:
        raise FaceganError(f"the generator returned {generated.dtype} {generated.shape[1:]} images; the audit needs uint8 {train.images.shape[1:]}")
    target.update(num_generated=len(generated), seeds=f"0-{num_samples - 1}")
    return _run_audit(generated, train, holdout, spaces, target, discriminator, discriminator_skip, trained_on, device, report)


def audit_samples(
    samples: str | os.PathLike | np.ndarray,
    train: FaceDataset | str | os.PathLike,
    holdout: FaceDataset | str | os.PathLike,
    features: Iterable[str] = FEATURE_SPACES,
    max_images: int | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> AuditResult:
    """Audit generated faces from any generator: a folder of PNG/JPG files or a uint8 NHWC array.

    Everything runs except the discriminator attack, which needs model internals.
    """
    spaces = _check_spaces(features)
    check_device(device)
    if not isinstance(samples, np.ndarray):
        check_samples_folder(samples)  # before the datasets are read: a typo fails at once
    train, holdout = _as_dataset(train, "--train"), _as_dataset(holdout, "--holdout")
    _check_sets(train, holdout)
    report = _Progress(progress)
    notes: list[str] = []
    if isinstance(samples, np.ndarray):
        generated = samples[:max_images] if max_images is not None else samples
        if generated.dtype != np.uint8 or generated.ndim != 4 or generated.shape[1:] != train.images.shape[1:]:
            raise FaceganError(f"samples must be uint8 {train.images.shape[1:]} images, got {generated.dtype} {generated.shape}")
        target = {"kind": "samples", "path": None}
    else:
        report(f"reading images from {samples}")
        generated, skipped = load_sample_images(samples, train.resolution, train.channels, max_images)
        target = {"kind": "samples", "path": str(samples)}
        if skipped:
            notes.append(f"{sum(skipped.values())} file(s) in {samples} were skipped: " + ", ".join(f"{reason} {count}" for reason, count in sorted(skipped.items())))
    if len(generated) < 2:
        raise FaceganError(f"the audit needs at least 2 generated faces, got {len(generated)}")
    target["num_generated"] = len(generated)
    result = _run_audit(generated, train, holdout, spaces, target, None,
                        "samples carry no discriminator (the white-box attack needs the run folder)", None, device, report)
    result.notes = notes + result.notes
    return result
