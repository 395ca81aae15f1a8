"""Synthetic identities: many images each of *new* people, from an identity-aware generator.

    dataset = synthesize_identities(generator, identities=100, per_identity=20, reference=train_set)
    dataset.save("data/synth")                  # a normal FaceDataset, identity-labelled ("s00000", ...)

Each identity slot draws candidate identity seeds in order (seed, seed + 1, ...): the generator renders
`per_identity` images of the candidate (`Generator.sample_identity`, nuisance seeds derived from the
identity seed), a recogniser embeds them, and a candidate any of whose images lies closer than
`min_distance` (default: the recogniser's match threshold; "reference": no closer than the training faces
come to each other) to a reference (training) face is rejected and the next seed is tried. So no
synthetic person is one the recogniser would call a training person.

The manifest's "synth" entry records the generator, every identity's seeds and rejected seeds, and the
identity-consistency figures in the recogniser's face space: the median same-identity distance, the share
of same-identity pairs the recogniser matches, the share of different-identity pairs it keeps apart, and
per identity the distance to the closest training face. When the generator was trained with that very
recogniser (an identity loss in its face space), the figures are marked "independent": false, since a
generator can learn to please the recogniser it was trained against.
"""
from __future__ import annotations

import hashlib
import math
import numbers
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan.provenance.record import TRAINED

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "IDENTITY_PREFIX",
    "MAX_PAIRS",
    "NUISANCE_RULE",
    "default_reference",
    "identity_name",
    "nuisance_seeds_for",
    "summary_line",
    "synthesize_identities",
    "training_recogniser",
]

IDENTITY_PREFIX = "s"
DEFAULT_MAX_ATTEMPTS = 20
"""Candidate identity seeds tried for one identity slot before giving up: a generator that keeps
reproducing training people needs more training or more identities, not more tries."""
MAX_PAIRS = 20_000  # per kind; enough for the medians, shares and AUC to ~0.005, and LBPH pairs cost ~1 ms each
"""Same-identity and different-identity pairs measured at most (each); more are sampled at random."""
MAX_SEED = 2**63
# Other names under which a recogniser is registered (verify registers "dlib" as dlib-resnet's alias).
_ALIASES = {"dlib": "dlib-resnet"}

ProgressCallback = Callable[[int, int], None]


def identity_name(index: int) -> str:
    """The name of the index-th synthetic identity: 0 -> 's00000'."""
    return f"{IDENTITY_PREFIX}{index:05d}"


NUISANCE_RULE = "image j of an identity: facegan.recognition.synth.nuisance_seeds_for(identity_seed, K)[j] = first 8 bytes (little-endian) of sha256('facegan-synth:{identity_seed}:{j}') >> 1"


def nuisance_seeds_for(identity_seed: int, count: int) -> list[int]:
    """The nuisance seeds of one identity: fixed by its seed alone, distinct across identities, prefix-stable
    (image j is the same whatever `count`), each in [0, 2**63)."""
    return [
        int.from_bytes(hashlib.sha256(f"facegan-synth:{identity_seed}:{index}".encode()).digest()[:8], "little") >> 1
        for index in range(count)
    ]


def _canonical(name: Any) -> str | None:
    """A recogniser as recorded ('dlib-resnet', 'dlib-resnet v1', 'dlib', {"name": ...}) -> its registered name."""
    if isinstance(name, dict):
        name = name.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    words = name.split()
    # idgan records "NAME vVERSION"; the version does not make it another recogniser for this purpose.
    if len(words) == 2 and words[1].startswith("v"):
        words = words[:1]
    name = " ".join(words)
    return _ALIASES.get(name, name)


def training_recogniser(generator: Any) -> str | None:
    """The recogniser the generator was trained against, as its export records it (metadata["identity"]["recogniser"]), or None."""
    metadata = getattr(generator, "metadata", None)
    identity = metadata.get("identity") if isinstance(metadata, dict) else None
    recorded = identity.get("recogniser") if isinstance(identity, dict) else None
    if isinstance(recorded, dict):
        recorded = " ".join(str(recorded[key]) for key in ("name", "version") if recorded.get(key) is not None) or None
    return recorded if isinstance(recorded, str) and recorded.strip() else None


def _resolve_recogniser(recogniser: Any, device: str) -> Any:
    """A recogniser object as is; a registered name or a recogniser run/export built."""
    if not isinstance(recogniser, str):
        for attribute in ("name", "embed", "match"):
            if not hasattr(recogniser, attribute):
                raise FaceganError(f"recogniser must be a name (e.g. dlib-resnet) or a faces.recognisers.Recogniser, got {type(recogniser).__name__}")
        return recogniser
    from facegan.recognition.resolve import resolve_recogniser

    return resolve_recogniser(recogniser, device=device)


def _check_count(name: str, value: Any, minimum: int, why: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise FaceganError(f"{name} must be a whole number, got {value!r:.60}")
    if value < minimum:
        raise FaceganError(f"{name} must be at least {minimum} ({why}), got {value}")
    return int(value)


def _pairwise_min(first: np.ndarray, second: np.ndarray, rule: Any, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `first` (A, D): the distance (by `rule`, a MatchRule) to its closest row of `second` (B, D) and that row's index.

    Euclidean and cosine take a matrix product; any other metric (LBPH's chi-square) goes through the
    rule's own row-by-row distance, so every recogniser is measured in its own metric.
    """
    metric = rule.metric
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    if metric == "cosine":
        first = first / np.maximum(np.linalg.norm(first, axis=1, keepdims=True), 1e-12)
        second = second / np.maximum(np.linalg.norm(second, axis=1, keepdims=True), 1e-12)
    second_sq = (second**2).sum(1)  # (B,)
    best = np.full(len(first), np.inf)
    best_index = np.zeros(len(first), dtype=np.int64)
    if metric not in ("cosine", "euclidean"):
        chunk = max(1, min(chunk, (1 << 22) // max(1, len(first) * first.shape[1])))  # bound the (A * b, D) pair arrays
    for start in range(0, len(second), chunk):
        block = second[start : start + chunk]  # (b, D)
        if metric == "cosine":
            distances = 1.0 - first @ block.T  # (A, b)
        elif metric == "euclidean":
            squared = (first**2).sum(1)[:, None] + second_sq[None, start : start + chunk] - 2.0 * first @ block.T
            distances = np.sqrt(np.maximum(squared, 0.0))
        else:
            left = np.repeat(first, len(block), axis=0)
            right = np.tile(block, (len(first), 1))
            distances = np.asarray(rule.distance(left, right), dtype=np.float64).reshape(len(first), len(block))
        index = distances.argmin(1)
        value = distances[np.arange(len(first)), index]
        better = value < best
        best[better], best_index[better] = value[better], index[better] + start
    return best, best_index


REFERENCE_SPACING_PERCENTILE = 1.0
MAX_SPACING_IMAGES = 5000


def reference_spacing(descriptors: np.ndarray, identity: np.ndarray | None, rule: Any, seed: int = 0) -> dict[str, Any]:
    """How close the reference's own faces come to each other: per image, the distance to its closest other
    image (of another identity when labelled), and the 1st percentile of those (robust to a few duplicates).

    `min_distance="reference"` rejects a synthetic person closer to a training face than that: closer than
    training people come to one another. At low resolution a recogniser's match threshold can exceed it
    (dlib at 32 px puts most LFW faces within 0.6 of some other face), and then the threshold would reject
    every candidate, new or not.
    """
    rows = np.arange(len(descriptors))
    limit = MAX_SPACING_IMAGES if rule.metric in ("cosine", "euclidean") else MAX_SPACING_IMAGES // 10  # chi-square is per pair
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
    if len(rows) < 2:
        raise FaceganError("min_distance='reference' needs at least 2 reference faces to measure how far apart they are")
    chosen = np.asarray(descriptors)[rows]
    labels = None if identity is None else np.asarray(identity)[rows]
    nearest = np.full(len(rows), np.inf)
    for index in range(len(rows)):
        others = np.ones(len(rows), dtype=bool)
        others[index] = False
        if labels is not None and labels[index] >= 0:
            others &= labels != labels[index]
        if others.any():
            nearest[index] = _pairwise_min(chosen[index : index + 1], chosen[others], rule)[0][0]
    finite = nearest[np.isfinite(nearest)]
    if not len(finite):
        raise FaceganError("min_distance='reference' needs reference faces of at least 2 identities")
    return {
        "value": float(np.percentile(finite, REFERENCE_SPACING_PERCENTILE)),
        "percentile": REFERENCE_SPACING_PERCENTILE,
        "nearest_other_median": float(np.median(finite)),
        "num_images": int(len(rows)),
        "between": "different identities" if labels is not None else "different images",
    }


def _consistency_pairs(identity: np.ndarray, num_identities: int, per_identity: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(same (P, 2), different (Q, 2)) image-index pairs: all of them when few, else MAX_PAIRS each at random."""
    total = len(identity)
    if total * (total - 1) // 2 <= 2 * MAX_PAIRS:
        left, right = np.triu_indices(total, k=1)
        same = identity[left] == identity[right]
        return np.stack([left[same], right[same]], 1), np.stack([left[~same], right[~same]], 1)
    # Images are stored identity by identity: image = identity * per_identity + position.
    num_same = num_identities * per_identity * (per_identity - 1) // 2
    if num_same <= MAX_PAIRS:
        first, second = np.triu_indices(per_identity, k=1)
        base = (np.arange(num_identities) * per_identity)[:, None]
        same_pairs = np.stack([(base + first).ravel(), (base + second).ravel()], 1)
    else:
        who = rng.integers(0, num_identities, MAX_PAIRS)
        first = rng.integers(0, per_identity, MAX_PAIRS)
        second = (first + rng.integers(1, per_identity, MAX_PAIRS)) % per_identity  # never the same image
        same_pairs = np.stack([who * per_identity + first, who * per_identity + second], 1)
    left_identity = rng.integers(0, num_identities, MAX_PAIRS)
    right_identity = (left_identity + rng.integers(1, num_identities, MAX_PAIRS)) % num_identities  # never the same person
    different_pairs = np.stack([
        left_identity * per_identity + rng.integers(0, per_identity, MAX_PAIRS),
        right_identity * per_identity + rng.integers(0, per_identity, MAX_PAIRS),
    ], 1)
    return same_pairs, different_pairs


def _pair_distances(rule: Any, descriptors: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Distances of index pairs, a block at a time: 100k pairs of 16384-wide LBPH histograms are 13 GB at once."""
    block = max(1, (1 << 24) // max(1, descriptors.shape[1]))  # ~128 MiB of float64 per side
    parts = [np.asarray(rule.distance(descriptors[pairs[start : start + block, 0]], descriptors[pairs[start : start + block, 1]]), dtype=np.float64)
             for start in range(0, len(pairs), block)]
    return np.concatenate(parts) if parts else np.zeros(0)


def _consistency(recogniser: Any, descriptors: np.ndarray, identity: np.ndarray, num_identities: int, per_identity: int, seed: int) -> dict[str, Any]:
    """The identity-consistency figures of the synthetic set, in the recogniser's face space."""
    rng = np.random.default_rng(seed)
    same_pairs, different_pairs = _consistency_pairs(identity, num_identities, per_identity, rng)
    rule = recogniser.match
    same = _pair_distances(rule, descriptors, same_pairs)
    different = _pair_distances(rule, descriptors, different_pairs)
    return {
        "intra_identity_distance_median": float(np.median(same)),
        "same_identity_within_threshold": float(np.mean(rule.matches(same))),
        "inter_identity_distance_median": float(np.median(different)),
        "different_identity_beyond_threshold": float(np.mean(~rule.matches(different))),
        # Threshold-free: the chance a same-identity pair is closer than a different-identity one (ties
        # count half), so recognisers with nominal thresholds (pixel, lbph) are compared fairly.
        "same_vs_different_auc": _separation_auc(same, different),
        "num_same_identity_pairs": int(len(same)),
        "num_different_identity_pairs": int(len(different)),
        "pairs_sampled": bool(len(same) + len(different) < len(identity) * (len(identity) - 1) // 2),
    }


def _separation_auc(same: np.ndarray, different: np.ndarray) -> float:
    """P(d_same < d_different) + P(tie) / 2 by Mann-Whitney ranks (scipy-free, exact with ties)."""
    distances = np.concatenate([same, different])
    order = np.argsort(distances, kind="stable")
    ranks = np.empty(len(distances), dtype=np.float64)
    sorted_distances = distances[order]
    boundaries = np.flatnonzero(np.diff(sorted_distances)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(distances)]])
    for start, end in zip(starts, ends):  # tied runs share their mean rank
        ranks[order[start:end]] = (start + end + 1) / 2.0
    same_rank_sum = ranks[: len(same)].sum()
    closer_count = len(same) * len(different) + len(same) * (len(same) + 1) / 2.0 - same_rank_sum  # U of "same is smaller"
    return float(closer_count / (len(same) * len(different)))


def _images_for(generator: Any, identity_seed: int, nuisance: Sequence[int], truncation: float) -> np.ndarray:
    images = generator.sample_identity(identity_seed, nuisance, truncation=truncation)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(nuisance) or images.shape[3] not in (1, 3) or images.shape[1] != images.shape[2]:
        raise FaceganError(
            f"the generator's sample_identity returned {images.dtype} {images.shape} for {len(nuisance)} nuisance seeds; "
            "expected uint8 (K, S, S, C) square 1- or 3-channel images"
        )
    return images


def _reference_descriptors(recogniser: Any, reference: FaceDataset) -> np.ndarray:
    descriptors = np.asarray(recogniser.embed(np.asarray(reference.images)), dtype=np.float32)
    if descriptors.ndim != 2 or len(descriptors) != len(reference):
        raise FaceganError(f"recogniser {recogniser.name!r} returned {descriptors.shape} descriptors for {len(reference)} images")
    return descriptors


def synthesize_identities(
    generator: Any,
    identities: int,
    per_identity: int,
    *,
    seed: int = 0,
    recogniser: Any = "dlib-resnet",
    reference: FaceDataset | None = None,
    min_distance: float | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    truncation: float = 1.0,
    progress: ProgressCallback | None = None,
    device: str = "cpu",
    source: str | None = None,
    measure_with: Sequence[Any] = (),
) -> FaceDataset:
    """`identities` new people x `per_identity` images each, as an identity-labelled FaceDataset (not saved).

    `generator`: an identity-aware Generator (or a path to its run/export). `recogniser`: a registered name
    or a Recogniser. `reference`: the training faces new people must differ from (None: not checked, and
    the manifest says so). `progress(identities_done, identities)` is called after each accepted identity.
    `source` names the generator in messages and the manifest (default: its path when given as one).
    `max_attempts` is the number of candidate identity seeds one identity slot may try before giving up.
    `measure_with`: more recognisers (names or objects) that measure the same consistency figures, each
    marked independent or not, so a generator trained against `recogniser` is also judged by others.
    """
    from facegan.models.export import MAX_IMAGE_BYTES, check_truncation

    num_identities = _check_count("identities", identities, 2, "different-identity pairs need two people")
    per_identity = _check_count("per_identity", per_identity, 2, "same-identity pairs need two images of each person")
    max_attempts = _check_count("max_attempts", max_attempts, 1, "each identity needs at least one candidate")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < MAX_SEED:
        raise FaceganError(f"seed must be a whole number in [0, 2**63), got {seed!r:.60}")
    seed = int(seed)
    truncation = check_truncation(truncation)
    if reference is not None and not isinstance(reference, FaceDataset):
        raise FaceganError(f"reference must be a FaceDataset of the training faces (FaceDataset.load(path)) or None, got {type(reference).__name__}")
    if reference is not None and len(reference) == 0:
        raise FaceganError("the reference dataset holds no images; pass the dataset the generator was trained on")

    if isinstance(generator, (str, os.PathLike)):
        from facegan.models.export import load_generator, resolve_export_path

        source = source or str(resolve_export_path(generator))
        generator = load_generator(generator, device=device)
    source = source or "the generator"
    if not getattr(generator, "identity_aware", False):
        raise FaceganError(f"{source} is not identity-aware; train it with --condition identity")
    if not callable(getattr(generator, "sample_identity", None)):
        raise FaceganError(f"{source} claims to be identity-aware but has no sample_identity(identity_seed, nuisance_seeds)")

    resolution, channels = getattr(generator, "resolution", None), getattr(generator, "channels", None)
    if isinstance(resolution, int) and isinstance(channels, int):
        needed = num_identities * per_identity * resolution * resolution * channels
        if needed > MAX_IMAGE_BYTES:
            raise FaceganError(
                f"{num_identities} identities x {per_identity} images at {resolution}x{resolution}x{channels} would need "
                f"~{needed / 2**30:,.1f} GiB in memory (at most {MAX_IMAGE_BYTES // 2**30} GiB); ask for fewer, or run several --seed ranges"
            )
        if reference is not None and (reference.resolution, reference.channels) != (resolution, channels):
            raise FaceganError(
                f"the reference faces are {reference.resolution}x{reference.resolution}x{reference.channels} but the generator makes "
                f"{resolution}x{resolution}x{channels}; pass the dataset the generator was trained on"
            )
    if seed + num_identities * max_attempts > MAX_SEED:
        raise FaceganError(f"seed {seed} leaves too few identity seeds below 2**63; pass a smaller --seed")

    recogniser = _resolve_recogniser(recogniser, device)
    if isinstance(measure_with, (str, bytes)) or not isinstance(measure_with, Sequence):
        raise FaceganError(f"measure_with must be a list of recognisers (names or objects), got {type(measure_with).__name__}")
    judges = [_resolve_recogniser(judge, device) for judge in measure_with]
    rule = recogniser.match
    threshold = float(rule.threshold)
    min_distance_rule = "the recogniser's match threshold" if min_distance is None else "given"
    if min_distance is None:
        min_distance = threshold
    spacing_wanted = isinstance(min_distance, str) and min_distance == "reference"
    if spacing_wanted:
        if reference is None:
            raise FaceganError("min_distance='reference' measures the reference faces; pass the training dataset as reference")
        min_distance, min_distance_rule = 0.0, "reference"  # measured below, once the reference is embedded
    if isinstance(min_distance, bool) or not isinstance(min_distance, numbers.Real) or not math.isfinite(min_distance) or min_distance < 0:
        raise FaceganError(f"min_distance must be a finite distance of 0 or more, or 'reference', got {min_distance!r:.60}")
    min_distance = float(min_distance)
    trained_with = training_recogniser(generator)
    independent = _canonical(trained_with) != _canonical(getattr(recogniser, "name", None))
    notes: list[str] = []
    if not independent:
        notes.append(
            f"the consistency figures are measured by {recogniser.name}, the recogniser the generator was trained against, "
            "so they may flatter it; pass another recogniser (e.g. --recogniser lbph) for an independent check"
        )

    reference_descriptors = reference_identity = spacing = None
    if reference is not None:
        reference_descriptors = _reference_descriptors(recogniser, reference)
        reference_identity = reference.identity if reference.has_identities else None
        if spacing_wanted:
            spacing = reference_spacing(reference_descriptors, reference_identity, rule, seed)
            min_distance = spacing["value"]
    else:
        notes.append("no reference (training) faces given: synthetic identities were not checked against training people")

    all_images: np.ndarray | None = None  # (N*K, H, W, C), allocated once the image size is known (no concatenate copy)
    all_descriptors: list[np.ndarray] = []
    records: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    candidate = seed
    for index in range(num_identities):
        name = identity_name(index)
        for attempt in range(max_attempts):
            identity_seed, candidate = candidate, candidate + 1
            nuisance = nuisance_seeds_for(identity_seed, per_identity)
            images = _images_for(generator, identity_seed, nuisance, truncation)
            descriptors = np.asarray(recogniser.embed(images), dtype=np.float32)  # (K, D)
            if descriptors.ndim != 2 or len(descriptors) != per_identity or (
                    reference_descriptors is not None and descriptors.shape[1] != reference_descriptors.shape[1]):
                raise FaceganError(f"recogniser {recogniser.name!r} returned {descriptors.shape} descriptors for {per_identity} images")
            record: dict[str, Any] = {"name": name, "identity_seed": identity_seed}
            if reference_descriptors is not None:
                distances, nearest = _pairwise_min(descriptors, reference_descriptors, rule)
                closest = int(distances.argmin())
                training_index = int(nearest[closest])
                record["closest_training_distance"] = float(distances[closest])
                record["closest_training_image"] = training_index
                if reference_identity is not None and reference_identity[training_index] >= 0:
                    code = int(reference_identity[training_index])
                    names = reference.identity_names
                    record["closest_training_identity"] = names[code] if code < len(names) else code
                if distances[closest] < min_distance:
                    rejected.append({"slot": name, "identity_seed": identity_seed, "distance": float(distances[closest]),
                                     "training_image": training_index})
                    continue
            record["attempts"] = attempt + 1
            records.append(record)
            if all_images is None:
                all_images = np.empty((num_identities * per_identity, *images.shape[1:]), dtype=np.uint8)
            elif images.shape[1:] != all_images.shape[1:]:
                raise FaceganError(f"the generator's images changed shape from {all_images.shape[1:]} to {images.shape[1:]} between identities")
            all_images[index * per_identity : (index + 1) * per_identity] = images
            all_descriptors.append(descriptors)
            break
        else:
            last = rejected[-1]
            hint = "train it longer or on more identities, or lower --min-distance"
            if not spacing_wanted:
                own = reference_spacing(reference_descriptors, reference_identity, rule, seed)
                if own["nearest_other_median"] < min_distance:
                    hint = (f"but the training faces themselves lie closer than {min_distance:g} to one another (median nearest other "
                            f"{own['nearest_other_median']:.3f}): the threshold does not separate people at this size; "
                            "use --min-distance reference (no closer than training faces come to each other)")
            raise FaceganError(
                f"identity {name}: all {max_attempts} candidates (identity seeds {candidate - max_attempts}-{candidate - 1}) came closer than "
                f"{min_distance:g} to a training face (the last at {last['distance']:.3f}); the generator may reproduce training people — {hint}"
            )
        if progress is not None:
            progress(index + 1, num_identities)

    images = all_images
    identity = np.repeat(np.arange(num_identities, dtype=np.int64), per_identity)
    descriptors = np.concatenate(all_descriptors)
    consistency = _consistency(recogniser, descriptors, identity, num_identities, per_identity, seed)
    closest = [record["closest_training_distance"] for record in records if "closest_training_distance" in record]
    if closest:
        consistency["closest_training_distance_min"] = float(np.min(closest))
        consistency["closest_training_distance_median"] = float(np.median(closest))

    measured_by: dict[str, Any] = {}
    for judge in judges:
        judged = np.asarray(judge.embed(images), dtype=np.float32)
        if judged.ndim != 2 or len(judged) != len(images):
            raise FaceganError(f"recogniser {judge.name!r} returned {judged.shape} descriptors for {len(images)} images")
        measured_by[str(judge.name)] = {
            **_consistency(judge, judged, identity, num_identities, per_identity, seed),
            "version": str(getattr(judge, "version", "")), "metric": judge.match.metric, "threshold": float(judge.match.threshold),
            "independent": _canonical(trained_with) != _canonical(getattr(judge, "name", None)),
        }

    metadata = getattr(generator, "metadata", None) or {}
    manifest: dict[str, Any] = {
        "source": f"synth:{source}",
        "source_kind": "synthetic",
        "alignment": str((reference.manifest.get("alignment") if reference is not None else None) or metadata.get("alignment") or "generated"),
        "identity_names": [identity_name(index) for index in range(num_identities)],
        # The dataset's images are generated (image files written from it carry this through the image writer).
        "provenance": {"digital_source_type": TRAINED, "model": getattr(generator, "export_hash", None),
                       "fingerprint": getattr(generator, "fingerprint_id", None)},
        "synth": {
            "generator": {key: metadata[key] for key in ("dataset", "dataset_hash", "facegan_version", "format", "identity") if key in metadata},
            "seed": seed,
            "truncation": truncation,
            "per_identity": per_identity,
            # Not listed per identity (that would be N x K numbers): derived from each identity seed.
            "nuisance_seeds": NUISANCE_RULE,
            "min_distance": min_distance,
            "min_distance_rule": min_distance_rule,
            "reference_spacing": spacing,
            "max_attempts": max_attempts,
            "recogniser": {
                "name": str(recogniser.name),
                "version": str(getattr(recogniser, "version", "")),
                "metric": rule.metric,
                "threshold": threshold,
                "training_recogniser": trained_with,
                "independent": independent,
            },
            "reference": None if reference is None else {
                "path": str(reference.path) if reference.path is not None else None,
                "content_hash": reference.content_hash,
                "num_images": len(reference),
            },
            "consistency": consistency,
            "consistency_by_recogniser": measured_by,
            "num_rejected": len(rejected),
            "rejected": rejected,
            "identities": records,
            "notes": notes,
        },
    }
    return FaceDataset(images=images, manifest=manifest, identity=identity)


def default_reference(located_run: Any, generator: Any) -> tuple[FaceDataset | None, str | None]:
    """The training dataset of a run/export when it still loads unchanged: (dataset, None), else (None, why not).

    The export records the dataset's absolute path and content hash; a run's config records the path it was given.
    """
    metadata = getattr(generator, "metadata", None) or {}
    path = metadata.get("dataset")
    if not isinstance(path, str) or not path:
        config = {}
        if located_run is not None:
            try:
                config = located_run.read_config()
            except FaceganError:
                config = {}
        path = config.get("data") if isinstance(config, dict) else None
    if not isinstance(path, str) or not path:
        return None, "the model records no training dataset"
    if path.startswith("builtin:"):
        return None, f"the model was trained on {path}, which is not a prepared dataset folder"
    try:
        dataset = FaceDataset.load(path)
    except FaceganError as error:
        return None, f"the training dataset {path} does not load ({error})"
    recorded = metadata.get("dataset_hash")
    if isinstance(recorded, str) and recorded and dataset.content_hash != recorded:
        return None, f"the dataset at {path} is no longer the one the model was trained on (its content hash differs)"
    return dataset, None


def summary_line(dataset: FaceDataset, path: Path | str | None = None) -> str:
    """What `facegan synth` prints: size, rejections and the consistency figures."""
    synth = dataset.manifest["synth"]
    figures, recogniser = synth["consistency"], synth["recogniser"]
    num_identities = len(dataset.identity_names)
    where = f" in {path}" if path is not None else ""
    closest = figures.get("closest_training_distance_min")
    closest_text = f", closest training face at {closest:.3f}" if closest is not None else ""
    return (
        f"{num_identities} identities x {synth['per_identity']} images{where} ({synth['num_rejected']} candidates rejected as "
        f"closer than {synth['min_distance']:g} to a training face{closest_text}); {recogniser['name']}: same-identity pairs matched "
        f"{100 * figures['same_identity_within_threshold']:.1f}%, different-identity pairs apart "
        f"{100 * figures['different_identity_beyond_threshold']:.1f}%, median same-identity distance "
        f"{figures['intra_identity_distance_median']:.3f} (threshold {recogniser['threshold']:g}; "
        f"{'independent of training' if recogniser['independent'] else 'the recogniser used in training'})"
        + "".join(
            f"; {name}{'' if judged['independent'] else ' (used in training)'}: same-vs-different AUC {judged['same_vs_different_auc']:.3f}"
            for name, judged in synth.get("consistency_by_recogniser", {}).items()
        )
    )
