"""Attribute directions in a generator's latent space (InterFaceGAN), and conditional manipulation.

Shen et al. (InterFaceGAN, CVPR 2020): sample latents, label their images with an attribute classifier,
keep the most confident positives and negatives, fit a linear SVM in z; the unit normal of its boundary
is the direction that turns the attribute on. Editing one attribute also moves those whose boundaries
are not orthogonal to it; conditional manipulation removes that part:
    n_conditioned = n - N (N^T N)^-1 N^T n       (N: the conditioned attributes' normals as columns)
so moving along n_conditioned leaves every conditioned attribute's linear score unchanged.
Directions are cached per generator in `Run(results).editing_dir`, keyed by generator weights, classifier and settings.
"""
from __future__ import annotations

import hashlib
import json
import numbers
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from facegan.errors import FaceganError

DIRECTIONS_FORMAT = "facegan-latent-directions"
DIRECTIONS_VERSION = 1
# A direction whose part outside the conditioned span is shorter than this is (numerically) inside it.
MIN_RESIDUAL = 1e-3


@dataclass(frozen=True)
class DirectionSettings:
    """How directions are found; part of their cache key."""

    num_samples: int = 4000  # latents sampled and labelled (InterFaceGAN uses 500k at 1024 px; 32 px faces need far fewer)
    fraction: float = 0.25  # the top and the bottom this fraction by classifier score train the SVM
    validation: float = 0.3  # of those, held out to report the boundary's accuracy
    truncation: float = 1.0
    seed: int = 0

    def validate(self) -> "DirectionSettings":
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, numbers.Integral) or not 40 <= self.num_samples <= 10_000_000:
            raise FaceganError(f"--samples must be a whole number from 40 to 10,000,000, got {self.num_samples!r:.40}")
        for name, low, high in (("fraction", 0.01, 0.5), ("validation", 0.05, 0.9), ("truncation", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= float(value) <= high:
                raise FaceganError(f"direction {name} must be a number from {low:g} to {high:g}, got {value!r:.40}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or not 0 <= self.seed < 2**63:
            raise FaceganError(f"the direction seed must be a whole number from 0 to 2**63 - 1, got {self.seed!r:.40}")
        return self


@dataclass
class Directions:
    """Unit normals (A, z_dim) for every classifier attribute, with how well each boundary separates."""

    names: list[str]
    vectors: np.ndarray  # float64 (A, z_dim), unit rows; NaN rows where no boundary could be fitted
    fit: dict[str, dict[str, Any]]

    def vector(self, attribute: str) -> np.ndarray:
        if attribute not in self.names:
            raise FaceganError(f"unknown attribute '{attribute}': the labelled dataset has {', '.join(self.names)}")
        row = self.vectors[self.names.index(attribute)]
        if not np.isfinite(row).all():
            raise FaceganError(f"no direction for '{attribute}': {self.fit[attribute].get('why', 'the classifier never separates it')}")
        return row.copy()

    def conditioned(self, attribute: str, condition_on: Sequence[str] = ()) -> np.ndarray:
        """The direction of `attribute` with the directions of `condition_on` projected out (unit length)."""
        condition_on = list(dict.fromkeys(condition_on))
        if attribute in condition_on:
            raise FaceganError(f"--condition-on names '{attribute}', the attribute being edited; condition on the others only")
        return condition_direction(self.vector(attribute), [self.vector(name) for name in condition_on], condition_on)


def condition_direction(primary: np.ndarray, others: Sequence[np.ndarray], names: Sequence[str] | None = None) -> np.ndarray:
    """n - N (N^T N)^-1 N^T n, renormalised: the part of `primary` orthogonal to every row of `others`."""
    primary = np.asarray(primary, np.float64)
    if not len(others):
        return primary / np.linalg.norm(primary)
    basis = np.stack([np.asarray(row, np.float64) for row in others], axis=1)  # (z_dim, K)
    # Least squares solves (N^T N) c = N^T n without forming the inverse (stable when normals are nearly parallel).
    coefficients, *_ = np.linalg.lstsq(basis, primary, rcond=None)
    residual = primary - basis @ coefficients
    norm = np.linalg.norm(residual)
    if norm < MIN_RESIDUAL * np.linalg.norm(primary):
        what = ", ".join(names) if names else "the conditioned directions"
        raise FaceganError(f"the direction lies (almost) inside the span of {what}: conditioning on them leaves nothing to edit; "
                           "condition on fewer attributes")
    return residual / norm


def sample_latents(z_dim: int, num_samples: int, seed: int) -> torch.Tensor:
    """(num_samples, z_dim) standard normal latents from one seeded stream."""
    return torch.randn(num_samples, z_dim, generator=torch.Generator().manual_seed(int(seed)))


def find_directions(generator: Any, classifier: Any, settings: DirectionSettings | None = None,
                    progress: Callable[[int, int], None] | None = None, batch_size: int = 256) -> Directions:
    """One direction per classifier attribute from one labelled sample of the generator (see the module docstring)."""
    from sklearn.svm import LinearSVC

    settings = (settings or DirectionSettings()).validate()
    z = sample_latents(generator.z_dim, settings.num_samples, settings.seed)
    logits = []
    for start in range(0, len(z), batch_size):
        images = generator.synthesize(z[start : start + batch_size], settings.truncation, batch_size)
        logits.append(classifier.logits(images))
        if progress is not None:
            progress(min(start + batch_size, len(z)), len(z))
    logits = np.concatenate(logits)  # (N, A)
    latents = z.numpy().astype(np.float64)
    count = max(2, int(round(settings.fraction * len(z))))
    names = classifier.attribute_names
    vectors = np.full((len(names), generator.z_dim), np.nan)
    fit: dict[str, dict[str, Any]] = {}
    rng = np.random.default_rng([settings.seed, 2])
    for column, name in enumerate(names):
        scores = logits[:, column]
        positive_rate = float((scores > 0).mean())
        order = np.argsort(scores, kind="stable")
        chosen = np.concatenate([order[-count:], order[:count]])
        labels = np.concatenate([np.ones(count, int), np.zeros(count, int)])
        row: dict[str, Any] = {"positive_rate": round(positive_rate, 6), "num_per_side": count,
                               "score_gap": round(float(scores[order[-count:]].mean() - scores[order[:count]].mean()), 6)}
        if not np.ptp(scores) > 1e-6:
            fit[name] = {**row, "why": "the classifier gives every sample the same score"}
            continue
        shuffled = rng.permutation(len(chosen))
        num_validation = max(1, int(round(settings.validation * len(chosen))))
        validation, training = shuffled[:num_validation], shuffled[num_validation:]
        svm = LinearSVC(C=1.0, dual="auto", max_iter=20_000, random_state=0)
        svm.fit(latents[chosen[training]], labels[training])
        normal = svm.coef_[0].astype(np.float64)
        norm = np.linalg.norm(normal)
        if not norm > 0:
            fit[name] = {**row, "why": "the boundary has a zero normal"}
            continue
        vectors[column] = normal / norm
        row["boundary_accuracy"] = round(float((svm.predict(latents[chosen[validation]]) == labels[validation]).mean()), 6)
        fit[name] = row
    return Directions(list(names), vectors, fit)


def generator_key(export_dir: str | os.PathLike) -> str:
    """sha256 (16 hex) of an export's weights file: directions belong to these exact weights."""
    from facegan.run import EXPORT_WEIGHTS_NAME

    digest = hashlib.sha256()
    with open(Path(export_dir) / EXPORT_WEIGHTS_NAME, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def directions_path(editing_dir: str | os.PathLike, generator_hash: str, classifier_key: str, settings: DirectionSettings) -> Path:
    payload = json.dumps({"generator": generator_hash, "classifier": classifier_key, "settings": asdict(settings),
                          "version": DIRECTIONS_VERSION}, sort_keys=True)
    return Path(editing_dir) / f"directions-{hashlib.sha256(payload.encode()).hexdigest()[:16]}.json"


def save_directions(path: str | os.PathLike, directions: Directions, provenance: dict[str, Any]) -> Path:
    """JSON (float64 written exactly by repr), atomically."""
    from facegan.config import save_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_json({
        "format": DIRECTIONS_FORMAT, "format_version": DIRECTIONS_VERSION, **provenance, "attributes": directions.names,
        "directions": [[float(value) if np.isfinite(value) else None for value in row] for row in directions.vectors],
        "fit": directions.fit,
    }, path)
    return path


def load_directions(path: str | os.PathLike, z_dim: int) -> Directions:
    from facegan.config import load_json_object

    data = load_json_object(path, "latent directions")
    try:
        if data.get("format") != DIRECTIONS_FORMAT or data.get("format_version") != DIRECTIONS_VERSION:
            raise ValueError("not a facegan directions file of this version")
        names = [str(name) for name in data["attributes"]]
        vectors = np.array([[np.nan if value is None else float(value) for value in row] for row in data["directions"]], np.float64)
        if vectors.shape != (len(names), z_dim):
            raise ValueError(f"directions of shape {vectors.shape}, expected {(len(names), z_dim)}")
        fit = {str(name): dict(data["fit"][name]) for name in names}
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise FaceganError(f"{path} is corrupt ({str(error)[:100]}); delete it and the directions are found again") from None
    return Directions(names, vectors, fit)


def cached_directions(editing_dir: str | os.PathLike, export_dir: str | os.PathLike, generator: Any, classifier: Any,
                      settings: DirectionSettings | None = None, progress: Callable[[int, int], None] | None = None) -> tuple[Directions, Path]:
    """The directions for (generator weights, classifier, settings): from `editing_dir`, or found and saved there."""
    settings = (settings or DirectionSettings()).validate()
    generator_hash = generator_key(export_dir)
    path = directions_path(editing_dir, generator_hash, classifier.key, settings)
    if path.is_file():
        try:
            return load_directions(path, generator.z_dim), path
        except FaceganError:
            pass  # a damaged cache file is recomputed and replaced
    directions = find_directions(generator, classifier, settings, progress)
    save_directions(path, directions, {"generator_weights_sha256_16": generator_hash, "classifier_key": classifier.key,
                                       "settings": asdict(settings)})
    return directions, path


__all__ = [
    "DirectionSettings", "Directions", "cached_directions", "condition_direction", "find_directions", "load_directions",
    "sample_latents", "save_directions",
]
