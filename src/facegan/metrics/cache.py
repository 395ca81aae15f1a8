"""Cache of real-image features, keyed by content, never by path.

Real data never changes between evaluations, so its features are computed once per
(dataset content, extractor, what the extractor sees, which images) and reused. Features are kept
whole, not only mean/covariance, because KID and PRDC need the samples.

Location: `$FACEGAN_CACHE_DIR/features/` (default `~/.cache/facegan/features/`), one `.npz` per key.
Files are written to a temporary name and renamed, so a killed run leaves either nothing or a
complete file; a file that fails to load or check is recomputed and replaced, never an error.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan.files import write_bytes_atomic
from facegan.metrics.features import FeatureExtractor, extract_features, extractor_identity

CACHE_ENV = "FACEGAN_CACHE_DIR"
CACHE_FORMAT_VERSION = 1
FEATURES_FOLDER = "features"


def cache_root() -> Path:
    """The facegan cache folder: $FACEGAN_CACHE_DIR, else ~/.cache/facegan."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "facegan"


def select_real_indices(num_images: int, num: int, seed: int) -> np.ndarray:
    """Rows of the real set to use: all if there are at most `num`, else a seeded random subset (sorted): (M,) int64."""
    if num_images <= num:
        return np.arange(num_images, dtype=np.int64)
    chosen = np.random.default_rng(seed).choice(num_images, size=num, replace=False)
    return np.sort(chosen).astype(np.int64)


def feature_cache_key(
    dataset_hash: str,
    extractor: FeatureExtractor,
    resolution: int,
    num_images_used: int,
    selection_seed: int | None,
) -> str:
    """sha256 over everything that decides the cached features: what data, which network, which rows.

    `selection_seed` is None when every image is used: the seed then picks nothing, and leaving it
    out lets every `num` >= the dataset size share one file.
    """
    identity = {
        "format": CACHE_FORMAT_VERSION,
        "dataset_hash": dataset_hash,
        "extractor": extractor_identity(extractor),
        "resolution": int(resolution),
        "num_images": int(num_images_used),
        "selection_seed": None if selection_seed is None else int(selection_seed),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def feature_cache_path(key: str, extractor_name: str, root: Path | None = None) -> Path:
    """Where the features for `key` live; the extractor name prefixes the file so a person can tell them apart."""
    safe_name = re.sub(r"[^A-Za-z0-9_-]+", "_", extractor_name) or "features"
    return (root or cache_root()) / FEATURES_FOLDER / f"{safe_name}-{key}.npz"


def load_cached_features(path: Path, key: str, indices: np.ndarray, dim: int) -> np.ndarray | None:
    """The cached float32 (M, dim) features, or None if the file is missing, corrupt or not for this key."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            stored_key = str(archive["key"])
            features = np.array(archive["features"])  # (M, D)
            stored_indices = np.array(archive["indices"])  # (M,)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if (
        stored_key != key
        or features.dtype != np.float32
        or features.shape != (len(indices), dim)
        or not np.array_equal(stored_indices, indices)
        or not np.all(np.isfinite(features))
    ):
        return None
    return features


def save_cached_features(path: Path, key: str, features: np.ndarray, indices: np.ndarray, info: dict[str, Any]) -> None:
    """Write the features atomically (facegan.files: temp file + os.replace, never through a link or
    over a device); a cache that cannot be written only warns."""
    buffer = io.BytesIO()
    # A 0-d unicode array, not a dict, so loading never needs pickle.
    np.savez(buffer, key=np.array(key), features=features, indices=indices, info=np.array(json.dumps(info, sort_keys=True)))
    try:
        write_bytes_atomic(path, buffer.getvalue())
    except FaceganError as error:
        warnings.warn(f"could not write the feature cache ({error}); features will be recomputed next time", stacklevel=2)


@dataclass
class RealFeatures:
    """Features of (a seeded subset of) a real dataset, and where they came from."""

    features: np.ndarray  # (M, D) float32, row i belongs to dataset row indices[i]
    indices: np.ndarray  # (M,) int64, sorted
    selection_seed: int | None  # None: every image is used
    cache_path: Path | None  # None when caching was off
    from_cache: bool


def iterate_rows(images: np.ndarray, indices: np.ndarray, batch_size: int):
    """uint8 (B, H, W, C) chunks of the given rows, copied out of a memmap one chunk at a time."""
    for start in range(0, len(indices), batch_size):
        yield np.asarray(images[indices[start : start + batch_size]])


def compute_real_features(
    dataset: FaceDataset,
    extractor: FeatureExtractor,
    num: int,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> RealFeatures:
    """Features of `num` real images (all if fewer; else a subset drawn with `seed`), from the cache when possible."""
    indices = select_real_indices(len(dataset), num, seed)  # (M,)
    selection_seed = None if len(indices) == len(dataset) else seed
    key = feature_cache_key(dataset.content_hash, extractor, dataset.resolution, len(indices), selection_seed)
    path = feature_cache_path(key, str(extractor.name), Path(cache_dir) if cache_dir is not None else None) if cache else None
    if path is not None:
        cached = load_cached_features(path, key, indices, int(extractor.dim))
        if cached is not None:
            return RealFeatures(cached, indices, selection_seed, path, from_cache=True)
    features = extract_features(
        extractor, iterate_rows(dataset.images, indices, batch_size), batch_size, total=len(indices), progress=progress, description="real features"
    )  # (M, D)
    if path is not None:
        info = {
            "dataset_hash": dataset.content_hash,
            "extractor": extractor_identity(extractor),
            "resolution": dataset.resolution,
            "num_images": len(indices),
            "selection_seed": selection_seed,
        }
        save_cached_features(path, key, features, indices, info)
    return RealFeatures(features, indices, selection_seed, path, from_cache=False)
