"""Attribute editing: move latents along a direction, and measure what moved.

`edit` renders z + s * d for each strength s; s = 0 renders z itself, so that column is the original
image byte for byte. `measure_edit` reports, per strength, the classifier's score change for the target
attribute, the mean |change| of every other attribute, and the identity drift (recogniser distance from
the edited face to the original one). `edit_strip` is the whole `facegan edit` command as a function.
"""
from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from facegan.errors import FaceganError

EDIT_FORMAT = "facegan-edit"
MAX_STRENGTH = 100.0  # |s| beyond this leaves the latent distribution entirely (|z| ~ sqrt(z_dim))
MAX_STEPS = 64


def check_strengths(strengths: Sequence[float]) -> list[float]:
    values = [strengths] if isinstance(strengths, numbers.Real) else list(strengths)
    if not values:
        raise FaceganError("no strengths given; pass e.g. --strength -3..3")
    checked = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or abs(value) > MAX_STRENGTH:
            raise FaceganError(f"edit strengths must be finite numbers within +-{MAX_STRENGTH:g}, got {value!r:.40}")
        checked.append(float(value))
    return checked


def check_latents(latents: Any, z_dim: int, what: str = "the latents") -> torch.Tensor:
    """(N, z_dim) finite float latents as a float32 tensor; anything else is one line."""
    array = latents.detach().cpu().numpy() if isinstance(latents, torch.Tensor) else np.asarray(latents)
    if array.dtype.kind != "f" or array.ndim != 2 or array.shape[1] != z_dim or not len(array):
        raise FaceganError(f"{what} must be a float array of shape (N, {z_dim}) (latents.npy from `facegan project` with this model), "
                           f"got {array.dtype} {array.shape}")
    if not np.isfinite(array).all():
        raise FaceganError(f"{what} contain NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def load_latents(path: str | os.PathLike, z_dim: int) -> torch.Tensor:
    """latents.npy (float32 (N, z_dim), as `facegan project` writes) -> tensor; one line when it is not that."""
    from facegan.files import read_regular_file

    path = Path(path)
    if not path.is_file():
        raise FaceganError(f"--latents {path} is not a file; pass the latents.npy that `facegan project` wrote")
    import io

    try:
        array = np.load(io.BytesIO(read_regular_file(path, 1 << 31)), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise FaceganError(f"--latents {path} is not a readable .npy array ({str(error)[:80]}); pass the latents.npy that `facegan project` wrote") from None
    return check_latents(array, z_dim, f"--latents {path}")


def edit(generator: Any, z: Any, direction: Any, strengths: Sequence[float], truncation: float = 1.0,
         batch_size: int = 64) -> np.ndarray:
    """uint8 (N, S, H, W, C): row i is z[i] + s * direction for each strength s (s = 0 is z[i] itself)."""
    z = check_latents(z, generator.z_dim)
    direction = torch.as_tensor(np.asarray(direction, np.float64), dtype=torch.float32)
    if direction.shape != (generator.z_dim,) or not torch.isfinite(direction).all():
        raise FaceganError(f"the direction must be a finite vector of length {generator.z_dim}, got shape {tuple(direction.shape)}")
    strengths = check_strengths(strengths)
    columns = []
    for strength in strengths:
        # Each column is one call on the same N latents, so the s = 0 column is what synthesize(z) gives.
        moved = z if strength == 0 else z + strength * direction
        columns.append(generator.synthesize(moved, truncation, batch_size))
    return np.stack(columns, axis=1)


def measure_edit(images: np.ndarray, strengths: Sequence[float], classifier: Any, attribute: str,
                 recogniser: Any | None = None, reference: int | None = None) -> dict[str, Any]:
    """Per strength, against the original images (the s = 0 column, else `reference`): classifier score
    change of `attribute` (probability, mean over images), mean |change| of the other attributes, and the
    identity drift (mean recogniser distance to the original and the share still the same person)."""
    strengths = check_strengths(strengths)
    images = np.asarray(images)
    count, num_strengths = images.shape[:2]
    if reference is None:
        if 0.0 not in strengths:
            raise FaceganError("measuring an edit needs the original: include strength 0")
        reference = strengths.index(0.0)
    target = classifier.index(attribute)
    names = classifier.attribute_names
    flat = images.reshape(count * num_strengths, *images.shape[2:])
    scores = classifier.scores(flat).reshape(count, num_strengths, len(names)).astype(np.float64)
    change = scores - scores[:, reference : reference + 1]  # (N, S, A)
    others = [column for column in range(len(names)) if column != target]
    embeddings = distances = None
    if recogniser is not None:
        embeddings = recogniser.embed(flat).reshape(count, num_strengths, -1)
    rows = []
    for column, strength in enumerate(strengths):
        row: dict[str, Any] = {
            "strength": strength,
            "target_score": round(float(scores[:, column, target].mean()), 6),
            "target_change": round(float(change[:, column, target].mean()), 6),
            "others_abs_change": round(float(np.abs(change[:, column, others]).mean()), 6) if others else 0.0,
            "per_attribute_change": {names[a]: round(float(change[:, column, a].mean()), 6) for a in range(len(names))},
        }
        if embeddings is not None:
            distances = np.asarray(recogniser.distance(embeddings[:, column], embeddings[:, reference]), np.float64)
            same = np.asarray(recogniser.same_person(embeddings[:, column], embeddings[:, reference]))
            row["identity_drift"] = round(float(distances.mean()), 6)
            row["same_person_rate"] = round(float(same.mean()), 6)
        rows.append(row)
    summary = _summary(rows, strengths)
    return {"attribute": attribute, "num_images": int(count), "per_strength": rows, "summary": summary,
            "recogniser": getattr(recogniser, "name", None), "threshold": getattr(recogniser, "threshold", None)}


def _summary(rows: list[dict[str, Any]], strengths: list[float]) -> dict[str, Any]:
    """Score change from the most negative to the most positive strength, and the worst drift on the way."""
    low, high = rows[int(np.argmin(strengths))], rows[int(np.argmax(strengths))]
    summary = {
        "target_change_low_to_high": round(high["target_score"] - low["target_score"], 6),
        "target_change_at_max": high["target_change"],
        "others_abs_change_at_max": high["others_abs_change"],
        "others_abs_change_max": max(row["others_abs_change"] for row in rows),
    }
    if "identity_drift" in high:
        summary["identity_drift_at_max"] = high["identity_drift"]
        summary["identity_drift_max"] = max(row["identity_drift"] for row in rows)
    return summary


def strip_image(images: np.ndarray, padding: int = 2) -> np.ndarray:
    """uint8 (N, S, H, W, C) -> one HWC image: a row per latent, a column per strength."""
    from facegan.images import make_grid

    count, num_strengths = images.shape[:2]
    return make_grid(images.reshape(count * num_strengths, *images.shape[2:]), num_columns=num_strengths, padding=padding)


@dataclass
class EditResult:
    """What `edit_strip` made: the images, the directions used and the measurements (edit.json's content)."""

    images: np.ndarray  # uint8 (N, S, H, W, C)
    strengths: list[float]
    direction: np.ndarray  # the (conditioned) unit direction used
    report: dict[str, Any] = field(default_factory=dict)


def edit_strip(model: str | os.PathLike, attribute: str, strengths: Sequence[float], seeds: Sequence[int] | None = None,
               latents: Any = None, data: Any = None, condition_on: Sequence[str] = (), num_samples: int = 4000,
               recogniser: str | None = "dlib", compare_unconditioned: bool = True, truncation: float = 1.0,
               seed: int = 0, device: str = "cpu", classifier_settings: Any = None,
               progress: Callable[[str, int, int], None] | None = None, max_faces: int | None = None) -> EditResult:
    """`facegan edit` as a function: classifier (cached), directions (cached), the edit, its measurements.

    model: run folder or export; data: a labelled FaceDataset or its path (default: the run's training data);
    seeds or latents (N, z_dim) pick the faces; condition_on: attributes to hold still (conditional manipulation).
    """
    from facegan.data.dataset import FaceDataset
    from facegan.editing.classifier import ClassifierSettings, cached_classifier, dataset_attributes
    from facegan.editing.directions import DirectionSettings, cached_directions
    from facegan.models.export import load_generator
    from facegan.run import Run

    strengths = check_strengths(strengths)
    if (seeds is None) == (latents is None):
        raise FaceganError("pick the faces with exactly one of --seeds or --latents")
    located = Run.locate(model)
    generator = load_generator(located.export_dir, device=device)
    if latents is not None:
        z = load_latents(latents, generator.z_dim) if isinstance(latents, (str, os.PathLike)) else check_latents(latents, generator.z_dim)
    else:
        z = generator.z_for_seeds(seeds)
    if max_faces is not None and len(z) > max_faces:
        raise FaceganError(f"{len(z)} faces to edit; at most {max_faces} in one strip (split the latents or seeds)")
    dataset, source = _labelled_dataset(data, located, generator, FaceDataset)
    _, names = dataset_attributes(dataset, source)
    if attribute not in names:
        raise FaceganError(f"unknown attribute '{attribute}': {source} has {', '.join(names)}")
    if attribute in condition_on:
        raise FaceganError(f"--condition-on names '{attribute}', the attribute being edited; condition on the others only")
    unknown = [name for name in condition_on if name not in names]
    if unknown:
        raise FaceganError(f"--condition-on names unknown attribute '{unknown[0]}': {source} has {', '.join(names)}")
    settings = DirectionSettings(num_samples=num_samples, truncation=truncation, seed=seed).validate()
    editing_dir = Run(located.results_dir).editing_dir

    def stage(name: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, total: progress(name, done, total))

    classifier = cached_classifier(editing_dir, dataset, classifier_settings or ClassifierSettings(), device, stage("classifier"))
    directions, directions_file = cached_directions(editing_dir, located.export_dir, generator, classifier, settings, stage("directions"))
    raw = directions.vector(attribute)
    direction = directions.conditioned(attribute, condition_on)
    images = edit(generator, z, direction, strengths, truncation)
    measuring = sorted(set(strengths) | {0.0})
    recognise = None
    if recogniser is not None:
        from facegan.faces.recognisers import get_recogniser

        recognise = get_recogniser(recogniser, device=device)
    measured_images = images if measuring == strengths else edit(generator, z, direction, measuring, truncation)
    report: dict[str, Any] = {
        "format": EDIT_FORMAT, "format_version": 1,
        "model": str(located.export_dir.resolve()), "attribute": attribute, "condition_on": list(condition_on),
        "strengths": strengths, "faces": {"seeds": list(seeds)} if seeds is not None else {"latents": str(latents) if isinstance(latents, (str, os.PathLike)) else "given", "count": len(z)},
        "truncation": truncation,
        "classifier": {"key": classifier.key, "dataset": source, "dataset_hash": classifier.info["dataset_hash"],
                       "holdout": classifier.info["holdout"][attribute], "attribute_names": names},
        "direction": {"file": str(directions_file), "fit": directions.fit[attribute],
                      "cosine_to_unconditioned": round(float(direction @ raw), 6),
                      "cosine_to_conditioned_on": {name: round(float(raw @ directions.vector(name)), 6) for name in condition_on}},
        # Measured with the direction used; with --condition-on, the plain direction beside it for comparison.
        "measurements": measure_edit(measured_images, measuring, classifier, attribute, recognise),
    }
    report["notes"] = classifier_notes(classifier.info["holdout"], [attribute, *condition_on])
    if condition_on and compare_unconditioned:
        report["unconditioned"] = measure_edit(edit(generator, z, raw, measuring, truncation), measuring, classifier, attribute, recognise)
    return EditResult(images=images, strengths=strengths, direction=direction, report=report)


def classifier_notes(holdout: dict[str, dict[str, Any]], attributes: Sequence[str]) -> list[str]:
    """Warnings for attributes the classifier does not really recognise on held-out faces (its scores then mean little)."""
    notes = []
    for name in attributes:
        row = holdout[name]
        if row.get("positive_rate") in (0.0, 1.0):
            notes.append(f"the held-out faces are all {'with' if row['positive_rate'] else 'without'} {name}, so the attribute classifier's "
                         "accuracy on it is unmeasured: its scores and direction may mean little; use a larger labelled --data")
        elif row["accuracy"] <= row["majority_accuracy"] or row["balanced_accuracy"] < 0.6:
            notes.append(f"the attribute classifier does no better than chance on held-out faces for {name} (accuracy {row['accuracy']:.3f}, "
                         f"always guessing the majority class {row['majority_accuracy']:.3f}, balanced {row['balanced_accuracy']:.3f}): "
                         "its scores and direction mean little; use a larger or higher-resolution labelled --data")
    return notes


def _labelled_dataset(data: Any, located: Any, generator: Any, dataset_class: type) -> tuple[Any, str]:
    """The dataset whose attribute labels train the classifier: `data`, else the model's training data."""
    if data is not None:
        if isinstance(data, (str, os.PathLike)):
            try:
                return dataset_class.load(data), str(data)
            except FaceganError as error:
                raise FaceganError(f"--data: {error}") from None
        return data, str(getattr(data, "path", None) or "the labelled dataset")
    from facegan.recognition.synth import default_reference

    dataset, why_not = default_reference(located.run, generator)
    if dataset is None:
        raise FaceganError(f"no labelled dataset for the attribute classifier ({why_not}); pass --data DATASET with attribute labels")
    return dataset, str(dataset.path)


__all__ = ["EditResult", "check_latents", "edit", "edit_strip", "load_latents", "measure_edit", "strip_image"]
