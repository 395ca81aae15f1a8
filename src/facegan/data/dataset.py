"""FaceDataset: a prepared, memory-mappable face set and its manifest.

On disk (one folder):
    images.npy      uint8 (N, H, W, C), loaded with mmap so nothing is decoded or copied per epoch
    labels.npz      optional per-image arrays: identity (int64, -1 = unknown), attributes (int8, N x A),
                    partition (int8: 0 train, 1 valid, 2 test, -1 unknown)
    manifest.json   metadata: size, channels, alignment, source, content hash, per-image source paths,
                    label names, skipped-file counts with reasons
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facegan.errors import FaceganError

MANIFEST_NAME = "manifest.json"
IMAGES_NAME = "images.npy"
LABELS_NAME = "labels.npz"
FORMAT_VERSION = 1


def compute_content_hash(images: np.ndarray) -> str:
    """sha256 of the pixels and their shape: the identity of a dataset, independent of its path."""
    digest = hashlib.sha256()
    digest.update(json.dumps(list(images.shape)).encode())
    # Hash in chunks so a memmap of a large set is streamed, not loaded whole.
    flat = images.reshape(images.shape[0], -1) if images.shape[0] else images.reshape(0, 0)
    for start in range(0, flat.shape[0], 4096):
        digest.update(np.ascontiguousarray(flat[start : start + 4096]).tobytes())
    return digest.hexdigest()


def check_output_folder(path: str | os.PathLike) -> Path:
    """Refuse to write a dataset over anything but nothing, an empty folder, or an older dataset.

    Saving replaces the folder whole, so pointing OUT at a photo folder (or a file) by mistake
    would otherwise delete it.
    """
    folder = Path(path)
    if not folder.exists():
        return folder
    if not folder.is_dir():
        raise FaceganError(f"output {folder} is a file; give a folder path for the prepared dataset")
    if (folder / MANIFEST_NAME).is_file() or not any(folder.iterdir()):
        return folder
    raise FaceganError(
        f"output folder {folder} exists and is not a prepared dataset; "
        "choose a new or empty folder (it would be replaced whole)"
    )


@dataclass
class FaceDataset:
    """Prepared face images (uint8 NHWC) with optional labels and a manifest."""

    images: np.ndarray
    manifest: dict[str, Any] = field(default_factory=dict)
    identity: np.ndarray | None = None
    attributes: np.ndarray | None = None
    partition: np.ndarray | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"FaceDataset images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}")
        for name in ("identity", "attributes", "partition"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.images):
                raise ValueError(f"{name} has {len(values)} rows for {len(self.images)} images")

    # ---- basic facts -------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    @property
    def content_hash(self) -> str:
        cached = self.manifest.get("content_hash")
        if cached is None:
            cached = compute_content_hash(self.images)
            self.manifest["content_hash"] = cached
        return cached

    @property
    def source_paths(self) -> list[str]:
        return list(self.manifest.get("paths", []))

    @property
    def identity_names(self) -> list[str]:
        return list(self.manifest.get("identity_names", []))

    @property
    def attribute_names(self) -> list[str]:
        return list(self.manifest.get("attribute_names", []))

    @property
    def has_identities(self) -> bool:
        return self.identity is not None and bool(np.any(self.identity >= 0))

    # ---- persistence -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True) -> "FaceDataset":
        """Open a prepared dataset folder; a missing or broken folder is one clear error."""
        folder = Path(path)
        if not folder.exists():
            raise FaceganError(f"dataset not found: {folder} (create it with `facegan data prepare SOURCE {folder}`)")
        manifest_path = folder / MANIFEST_NAME
        images_path = folder / IMAGES_NAME
        if not manifest_path.is_file() or not images_path.is_file():
            raise FaceganError(
                f"{folder} is not a prepared facegan dataset (no {MANIFEST_NAME}/{IMAGES_NAME}); "
                f"run `facegan data prepare SOURCE {folder}`"
            )
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise FaceganError(f"{manifest_path} is corrupt; prepare the dataset again") from None
        try:
            images = np.load(images_path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise FaceganError(f"{images_path} is corrupt ({error}); prepare the dataset again") from None
        if images.ndim != 4 or images.dtype != np.uint8:
            raise FaceganError(f"{images_path} is not a uint8 (N, H, W, C) array; prepare the dataset again")
        labels: dict[str, np.ndarray] = {}
        labels_path = folder / LABELS_NAME
        if labels_path.is_file():
            with np.load(labels_path, allow_pickle=False) as archive:
                labels = {key: archive[key] for key in archive.files}
        return cls(
            images=images,
            manifest=manifest,
            identity=labels.get("identity"),
            attributes=labels.get("attributes"),
            partition=labels.get("partition"),
            path=folder,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the dataset folder atomically: a temp folder beside it, then one rename."""
        folder = check_output_folder(path)
        folder.parent.mkdir(parents=True, exist_ok=True)
        manifest = dict(self.manifest)
        manifest.update(
            format_version=FORMAT_VERSION,
            num_images=len(self),
            resolution=self.resolution,
            channels=self.channels,
            content_hash=compute_content_hash(self.images),
        )
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
        try:
            np.save(staging / IMAGES_NAME, np.ascontiguousarray(self.images), allow_pickle=False)
            labels = {
                name: values
                for name, values in (("identity", self.identity), ("attributes", self.attributes), ("partition", self.partition))
                if values is not None
            }
            if labels:
                np.savez(staging / LABELS_NAME, **labels)
            (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            if folder.exists():
                # Replace an older dataset of the same name: move it aside first so a crash loses neither.
                backup = folder.with_name(f".{folder.name}.old-{os.getpid()}")
                os.replace(folder, backup)
                os.replace(staging, folder)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                os.replace(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.manifest = manifest
        self.path = folder
        return folder

    # ---- views -------------------------------------------------------------------------------
    def subset(self, indices: np.ndarray | list[int], **manifest_updates: Any) -> "FaceDataset":
        """An in-memory dataset of the given rows, labels and source paths carried along."""
        indices = np.asarray(indices, dtype=np.int64)
        manifest = {key: value for key, value in self.manifest.items() if key not in ("content_hash", "paths")}
        paths = self.manifest.get("paths")
        if paths:
            manifest["paths"] = [paths[i] for i in indices]
        manifest["parent_hash"] = self.content_hash
        manifest.update(manifest_updates)
        pick = lambda values: None if values is None else np.asarray(values)[indices]  # noqa: E731
        return FaceDataset(
            images=np.asarray(self.images[indices]),
            manifest=manifest,
            identity=pick(self.identity),
            attributes=pick(self.attributes),
            partition=pick(self.partition),
        )

    def split(self, holdout: float, by_identity: bool = False, seed: int = 0) -> tuple["FaceDataset", "FaceDataset"]:
        """Disjoint (train, holdout) sets; with `by_identity`, no identity appears in both."""
        if not 0.0 < holdout < 1.0:
            raise FaceganError(f"--holdout must be between 0 and 1 (exclusive), got {holdout}")
        if len(self) < 2:
            raise FaceganError("a split needs at least 2 images")
        rng = np.random.default_rng(seed)
        if by_identity:
            if not self.has_identities:
                raise FaceganError("--by identity needs identity labels, and this dataset has none; split without it")
            identities = np.unique(self.identity[self.identity >= 0])
            if len(identities) < 2:
                raise FaceganError("--by identity needs at least 2 identities")
            rng.shuffle(identities)
            num_holdout_ids = min(len(identities) - 1, max(1, int(round(holdout * len(identities)))))
            holdout_mask = np.isin(self.identity, identities[:num_holdout_ids])
            # Unlabelled images (identity -1) stay in train so no unknown person can straddle the split.
            holdout_indices = np.flatnonzero(holdout_mask)
            train_indices = np.flatnonzero(~holdout_mask)
        else:
            order = rng.permutation(len(self))
            num_holdout = min(len(self) - 1, max(1, int(round(holdout * len(self)))))
            holdout_indices = np.sort(order[:num_holdout])
            train_indices = np.sort(order[num_holdout:])
        split_info = {"holdout_fraction": holdout, "by_identity": by_identity, "seed": seed}
        return (
            self.subset(train_indices, split={**split_info, "part": "train"}),
            self.subset(holdout_indices, split={**split_info, "part": "holdout"}),
        )

    def describe(self) -> str:
        """Human-readable summary for `facegan data info`."""
        lines = [
            f"dataset      {self.path or '(in memory)'}",
            f"images       {len(self)} x {self.resolution}x{self.resolution}x{self.channels} uint8",
            f"source       {self.manifest.get('source', '?')} ({self.manifest.get('source_kind', '?')})",
            f"alignment    {self.manifest.get('alignment', '?')}",
            f"content hash {self.content_hash[:16]}",
        ]
        if self.has_identities:
            lines.append(f"identities   {len(np.unique(self.identity[self.identity >= 0]))} labelled")
        if self.attributes is not None:
            lines.append(f"attributes   {self.attributes.shape[1]} ({', '.join(self.attribute_names[:6])}{', ...' if len(self.attribute_names) > 6 else ''})")
        if self.partition is not None:
            counts = {name: int(np.sum(self.partition == code)) for code, name in ((0, "train"), (1, "valid"), (2, "test"))}
            lines.append("partition    " + ", ".join(f"{name} {count}" for name, count in counts.items()))
        skipped = self.manifest.get("skipped", {})
        if skipped:
            total = sum(skipped.values())
            lines.append(f"skipped      {total}: " + ", ".join(f"{reason} {count}" for reason, count in sorted(skipped.items())))
        else:
            lines.append("skipped      0")
        return "\n".join(lines)
