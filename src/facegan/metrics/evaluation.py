"""Evaluate a generator against real data: images -> features -> statistics -> metrics.

One pass per side: generated images are made seed by seed (so they never depend on the batch size),
each chunk goes once through the extractor (and the face detector), and those features feed every
metric asked for. Real features come from the content-keyed cache (`metrics.cache`).

    result = evaluate("runs/lfw32", "data/lfw32", num=2000, features="face")
    result.metrics  -> {"fd": ..., "kid_mean": ..., "precision": ..., "face_rate": ..., ...}
    result.save("runs/lfw32/metrics.json")
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan.metrics.cache import compute_real_features, iterate_rows, select_real_indices
from facegan.metrics.features import FeatureExtractor, check_device, check_extractor_name, checked_features, get_extractor, input_convention
from facegan.metrics.frechet import frechet_distance_from_features
from facegan.metrics.kid import DEFAULT_NUM_SUBSETS, DEFAULT_SUBSET_SIZE, effective_subset_size, kernel_inception_distance
from facegan.metrics.prdc import DEFAULT_CHUNK_SIZE, DEFAULT_NUM_NEIGHBOURS, precision_recall_density_coverage
from facegan.run import METRICS_NAME as METRICS_FILENAME
from facegan.run import Run

METRIC_NAMES = ("fd", "kid", "prdc", "face-rate")
FEATURE_METRICS = ("fd", "kid", "prdc")  # the ones that need an extractor

# Which way is better, per reported value (the report card reads the same names).
DIRECTIONS: dict[str, str] = {
    "fd": "↓ lower",
    "kid_mean": "↓ lower",
    "kid_std": "spread of kid_mean over subsets",
    "precision": "↑ higher",
    "recall": "↑ higher",
    "density": "↑ higher (~1 when alike)",
    "coverage": "↑ higher",
    "face_rate": "↑ higher (real data's rate is the target)",
    "face_rate_real": "reference: real data",
}

# During training: few samples and subsets, so a measurement costs seconds, not minutes.
TRAINING_NUM_SAMPLES = 500
TRAINING_KID_SUBSETS = 20

ImageSource = Callable[[list[int]], np.ndarray]  # seeds -> uint8 (N, H, W, C)


@dataclass
class EvalResult:
    """Metric values and the protocol that produced them (enough to reproduce or to refuse a comparison)."""

    metrics: dict[str, float]
    protocol: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": dict(self.metrics), "protocol": dict(self.protocol)}

    def save(self, path: str | os.PathLike) -> Path:
        """Write `{"metrics": ..., "protocol": ...}` as JSON atomically; returns the path."""
        from facegan.config import save_json

        path = Path(path)
        save_json(self.to_dict(), path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EvalResult":
        """Read a metrics.json written by `save`."""
        from facegan.config import load_json

        data = load_json(path, "metrics file")
        if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
            raise FaceganError(f"{path} is not a facegan metrics file (no 'metrics' mapping); run `facegan eval` again")
        return cls(dict(data["metrics"]), dict(data.get("protocol", {})))

    def format_table(self) -> str:
        """The metrics as an aligned table (metric, value, which way is better), then the protocol."""
        rows = [(name, _format_value(value), DIRECTIONS.get(name, "")) for name, value in self.metrics.items()]
        name_width = max([len("metric")] + [len(row[0]) for row in rows])
        value_width = max([len("value")] + [len(row[1]) for row in rows])
        lines = [f"{'metric':<{name_width}}  {'value':>{value_width}}  better", f"{'-' * name_width}  {'-' * value_width}  {'-' * 6}"]
        lines += [f"{name:<{name_width}}  {value:>{value_width}}  {better}" for name, value, better in rows]
        if self.protocol:
            key_width = max(len(key) for key in self.protocol)
            lines += ["", "protocol"] + [f"  {key:<{key_width}}  {_format_value(value)}" for key, value in self.protocol.items()]
        return "\n".join(lines)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    return str(value)


# ---- options ----------------------------------------------------------------------------------
def parse_metric_names(metrics: str | Iterable[str]) -> tuple[str, ...]:
    """'fd,kid' or ['fd', 'kid'] -> ('fd', 'kid'), checked and without repeats; unknown names are FaceganError."""
    names = [part.strip() for part in metrics.split(",")] if isinstance(metrics, str) else [str(part).strip() for part in metrics]
    names = [name for name in names if name]
    if not names:
        raise FaceganError(f"no metrics asked for; choose from: {', '.join(METRIC_NAMES)}")
    for name in names:
        if name not in METRIC_NAMES:
            raise FaceganError(f"unknown metric '{name}'; choose from: {', '.join(METRIC_NAMES)}")
    return tuple(dict.fromkeys(names))


def _check_number(name: str, value: Any, minimum: float, maximum: float | None = None, integer: bool = True) -> None:
    if integer and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
        raise FaceganError(f"{name} must be an integer, got {value!r}")
    if not integer and (isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value)):
        raise FaceganError(f"{name} must be a number, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise FaceganError(f"{name} must be {bound}, got {value}")


def _load_dataset(data: str | os.PathLike | FaceDataset | None, generator: Any) -> FaceDataset:
    if isinstance(data, FaceDataset):
        return data
    if data is None:
        trained_on = getattr(generator, "metadata", {}).get("dataset")
        if not trained_on:
            raise FaceganError("no real dataset to compare with: pass --data DATASET (the export does not name its training data)")
        if not Path(trained_on).exists():
            raise FaceganError(f"the model was trained on {trained_on}, which is not found from here; pass --data DATASET")
        data = trained_on
    return FaceDataset.load(data)


def _load_model(model: Any, device: str) -> tuple[Any, str]:
    """A path or a loaded Generator -> (generator, description for the protocol)."""
    from facegan.models.export import Generator, load_generator, resolve_export_path

    if isinstance(model, Generator):
        return model, "(in memory)"
    if isinstance(model, (str, os.PathLike)):
        return load_generator(model, device=device), str(resolve_export_path(model))
    raise FaceganError(f"model must be a run folder, an export folder or a loaded Generator, got {type(model).__name__}")


def default_metrics_path(model: str | os.PathLike) -> Path:
    """Where `facegan eval` writes metrics.json: the run folder (an export's parent run), else the export folder."""
    return Run.locate(model).results_dir / METRICS_FILENAME


def estimated_memory_bytes(num_generated: int, num_real: int, dim: int, metric_names: Sequence[str]) -> int:
    """Peak memory of one evaluation, roughly: both feature sets, PRDC's float64 copies and distance blocks, FD's covariances.

    Images are streamed chunk by chunk and never all held, so the count of images drives only the features.
    """
    needed = (num_generated + num_real) * dim * 4  # float32 features of both sides
    if "prdc" in metric_names:
        needed += (num_generated + num_real) * dim * 8 + 2 * DEFAULT_CHUNK_SIZE * max(num_generated, num_real) * 8
    if "fd" in metric_names:
        needed += 6 * dim * dim * 8  # covariances, their product and its square root, float64
    if "face-rate" in metric_names:
        needed += num_generated + num_real
    return int(needed)


# ---- the passes over images ---------------------------------------------------------------------
def _seed_chunks(source: ImageSource, seeds: Sequence[int], batch_size: int) -> Iterable[np.ndarray]:
    for start in range(0, len(seeds), batch_size):
        yield source(list(seeds[start : start + batch_size]))


def _image_pass(
    batches: Iterable[np.ndarray],
    extractor: FeatureExtractor | None,
    detector: Any | None,
    batch_size: int,
    total: int,
    progress: bool,
    description: str,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """One pass over uint8 NHWC chunks -> (features (N, D) or None, face found (N,) or None)."""
    features: list[np.ndarray] = []
    found: list[np.ndarray] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=description, unit="img", dynamic_ncols=True, leave=False)
    try:
        for images in batches:  # (B, H, W, C) uint8
            if extractor is not None:
                features.append(checked_features(extractor, images, batch_size))  # (B, D)
            if detector is not None:
                found.append(detector.detect(images))  # (B,)
            if bar is not None:
                bar.update(len(images))
    finally:
        if bar is not None:
            bar.close()
    return (np.concatenate(features) if extractor is not None else None, np.concatenate(found) if detector is not None else None)


def _feature_metrics(
    names: Sequence[str], real: np.ndarray, fake: np.ndarray, seed: int, num_kid_subsets: int, kid_subset_size: int, k: int
) -> dict[str, float]:
    """Every requested feature metric from one pair of feature sets: real (N, D), fake (M, D)."""
    values: dict[str, float] = {}
    if "fd" in names:
        values["fd"] = frechet_distance_from_features(real, fake)
    if "kid" in names:
        values["kid_mean"], values["kid_std"] = kernel_inception_distance(real, fake, num_kid_subsets, kid_subset_size, seed)
    if "prdc" in names:
        values.update(precision_recall_density_coverage(real, fake, k))
    return values


# ---- the API ------------------------------------------------------------------------------------
def evaluate(
    model: str | os.PathLike | Any,
    data: str | os.PathLike | FaceDataset | None = None,
    num: int = 2000,
    features: str = "face",
    metrics: str | Iterable[str] = METRIC_NAMES,
    seed: int = 0,
    batch_size: int = 64,
    truncation: float = 1.0,
    inception_weights: str | os.PathLike | None = None,
    progress: bool = True,
    device: str = "cpu",
    cache: bool = True,
) -> EvalResult:
    """Compare `num` generated images (seeds seed..seed+num-1) with up to `num` real ones.

    model: run folder, export folder, model.safetensors, or a loaded Generator.
    data: a prepared dataset folder or FaceDataset; None means the dataset the model was trained on.
    Real images: all of the dataset if it has at most `num`, else a random subset drawn with `seed`.
    features: a registered extractor name ("face", "inception", ...); only needed by fd/kid/prdc.
    device: where the generator and the extractor run. cache: reuse/store real features (metrics.cache).
    Every option is checked before any image is made; user errors are one-line FaceganErrors.
    """
    from facegan.version import __version__

    # ---- validate everything before any work
    metric_names = parse_metric_names(metrics)
    check_extractor_name(features)
    check_device(device)
    _check_number("--num", num, 2)
    _check_number("--batch-size", batch_size, 1)
    _check_number("--seed", seed, 0, 2**63 - num)
    _check_number("--truncation", truncation, 0.0, 1.0, integer=False)
    num, seed, batch_size, truncation = int(num), int(seed), int(batch_size), float(truncation)  # plain types for JSON
    generator, model_description = _load_model(model, device)
    dataset = _load_dataset(data, generator)
    if len(dataset) < 2:
        raise FaceganError(f"the real dataset has {len(dataset)} image(s); metrics need at least 2")
    if (generator.resolution, generator.channels) != (dataset.resolution, dataset.channels):
        raise FaceganError(
            f"the model makes {generator.resolution}x{generator.resolution}x{generator.channels} images but the dataset holds "
            f"{dataset.resolution}x{dataset.resolution}x{dataset.channels}; compare with a dataset prepared at the model's size"
        )
    real_indices = select_real_indices(len(dataset), num, seed)  # (M,)
    if "prdc" in metric_names and min(num, len(real_indices)) <= DEFAULT_NUM_NEIGHBOURS:
        raise FaceganError(
            f"prdc uses k={DEFAULT_NUM_NEIGHBOURS} nearest neighbours and needs more than {DEFAULT_NUM_NEIGHBOURS} images per side "
            f"(got {num} generated, {len(real_indices)} real); raise --num or leave prdc out"
        )
    needs_features = any(name in FEATURE_METRICS for name in metric_names)
    extractor = get_extractor(features, inception_weights=inception_weights, device=device) if needs_features else None
    from facegan.resources import check_fits_in_memory

    check_fits_in_memory(estimated_memory_bytes(num, len(real_indices), int(extractor.dim) if extractor is not None else 0, metric_names),
                         f"evaluating {num} generated images", "lower --num")
    detector = None
    if "face-rate" in metric_names:
        from facegan.faces.detection import FaceDetector

        detector = FaceDetector()

    # ---- one pass per side
    try:
        real_features = None
        if extractor is not None:
            real = compute_real_features(dataset, extractor, num, seed, batch_size, progress=progress, cache=cache)
            real_features = real.features  # (M, D)
        real_found = None
        if detector is not None:
            _, real_found = _image_pass(iterate_rows(dataset.images, real_indices, batch_size), None, detector, batch_size,
                                        len(real_indices), progress, "real faces")
        seeds = range(seed, seed + num)
        source: ImageSource = lambda chunk: generator.sample(chunk, truncation=truncation, batch_size=batch_size)  # noqa: E731
        fake_features, fake_found = _image_pass(_seed_chunks(source, seeds, batch_size), extractor, detector, batch_size, num, progress, "generated")
    finally:
        if detector is not None:
            detector.close()

    # ---- metrics from the features
    values: dict[str, float] = {}
    if extractor is not None:
        values.update(_feature_metrics(metric_names, real_features, fake_features, seed, DEFAULT_NUM_SUBSETS, DEFAULT_SUBSET_SIZE, DEFAULT_NUM_NEIGHBOURS))
    if detector is not None:
        values["face_rate"] = float(fake_found.mean())
        values["face_rate_real"] = float(real_found.mean())

    # ---- what was compared, so a number never travels without its protocol
    protocol: dict[str, Any] = {
        "metrics": ",".join(metric_names),
        "num_generated": num,
        "seeds": f"{seed}-{seed + num - 1}",
        "truncation": float(truncation),
        "model": model_description,
        "model_kimg": generator.metadata.get("kimg"),
        "num_real": len(real_indices),
        "real_selection": "all images" if len(real_indices) == len(dataset) else f"random {len(real_indices)} of {len(dataset)} (seed {seed})",
        "dataset": str(dataset.path) if dataset.path is not None else "(in memory)",
        "dataset_hash": dataset.content_hash,
        "trained_on_this_dataset": generator.metadata.get("dataset_hash") == dataset.content_hash,
        "image_size": f"{dataset.resolution}x{dataset.resolution}x{dataset.channels}",
    }
    if extractor is not None:
        protocol.update(extractor=str(extractor.name), extractor_version=str(extractor.version), feature_dim=int(extractor.dim),
                        resize=input_convention(features) or "as the extractor defines")
        if getattr(extractor, "weights_sha256", None):
            protocol["extractor_weights_sha256"] = str(extractor.weights_sha256)
    if "fd" in metric_names:
        protocol["fd_formula"] = "||mu1-mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(sqrt(S1) S2 sqrt(S1)), float64"
    if "kid" in metric_names:
        protocol.update(kid_kernel="(x.y/d + 1)^3, unbiased MMD^2", kid_subsets=DEFAULT_NUM_SUBSETS,
                        kid_subset_size=effective_subset_size(num, len(real_indices), DEFAULT_SUBSET_SIZE))
    if "prdc" in metric_names:
        protocol["prdc_k"] = DEFAULT_NUM_NEIGHBOURS
    if detector is not None:
        protocol.update({f"face_rate_{key}": value for key, value in detector.protocol.items()})
    protocol["facegan_version"] = __version__
    return EvalResult(values, protocol)


def compute_fd_kid(
    generator: Any,
    real_features: np.ndarray,
    extractor: FeatureExtractor,
    num: int = TRAINING_NUM_SAMPLES,
    seed: int = 0,
    batch_size: int = 64,
    truncation: float = 1.0,
    num_kid_subsets: int = TRAINING_KID_SUBSETS,
) -> dict[str, float]:
    """FD and KID of `num` generated images (seeds seed..seed+num-1) against precomputed real features (N, D).

    Cheap enough to call during training every `--metric-every` kimg. `generator` is a loaded
    Generator or any callable seeds -> uint8 (N, H, W, C) images; from inside the loop, e.g.
        lambda seeds: render(trainer.export_module, latents_for_seeds(seeds, config.model.z_dim))
    and the real side once per run: compute_real_features(dataset, extractor, num).features.
    Returns {"fd", "kid_mean", "kid_std"}.
    """
    _check_number("num", num, 2)
    real_features = np.asarray(real_features)
    if real_features.ndim != 2 or real_features.shape[1] != int(extractor.dim) or len(real_features) < 2:
        raise FaceganError(f"real features must be (N >= 2, {extractor.dim}) for '{extractor.name}', got {real_features.shape}")
    if callable(generator) and not hasattr(generator, "sample"):
        source: ImageSource = generator
    else:
        source = lambda chunk: generator.sample(chunk, truncation=truncation, batch_size=batch_size)  # noqa: E731
    fake_features, _ = _image_pass(_seed_chunks(source, range(seed, seed + num), batch_size), extractor, None, batch_size, num, False, "generated")
    return _feature_metrics(("fd", "kid"), real_features, fake_features, seed, num_kid_subsets, DEFAULT_SUBSET_SIZE, DEFAULT_NUM_NEIGHBOURS)
