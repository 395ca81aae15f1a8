"""FaceDataset: a prepared, memory-mappable face set and its manifest.

On disk (one folder):
    images.npy      uint8 (N, H, W, C), loaded with mmap so nothing is decoded or copied per epoch
    labels.npz      optional per-image arrays: identity (int64, -1 = unknown), attributes (int8, N x A),
                    partition (int8: 0 train, 1 valid, 2 test, -1 unknown)
    manifest.json   metadata: size, channels, alignment, source, content hash, per-image source paths,
                    label names, skipped-file counts with reasons
"""
from __future__ import annotations

import errno
import hashlib
import json
import numbers
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facegan.errors import FaceganError
from facegan.files import FOLDER_MODE, ReadRefused, check_writable_folder, read_regular_file, remove_stale_siblings, staging_sibling

MANIFEST_NAME = "manifest.json"
IMAGES_NAME = "images.npy"
LABELS_NAME = "labels.npz"
# Written in every manifest so a folder that merely holds some manifest.json (a web app, another
# tool's export) is never taken for a facegan dataset and replaced.
FORMAT_MARKER = "facegan-dataset"
FORMAT_VERSION = 2
# Version 1 datasets carried no marker; they are recognised by these keys.
_V1_KEYS = ("format_version", "num_images", "resolution", "channels", "content_hash")
DATASET_FILES = frozenset((MANIFEST_NAME, IMAGES_NAME, LABELS_NAME))
CORRUPT_HINT = "prepare the dataset again"


def compute_content_hash(images: np.ndarray) -> str:
    """sha256 of the pixels and their shape: the identity of a dataset, independent of its path."""
    digest = hashlib.sha256()
    digest.update(json.dumps(list(images.shape)).encode())
    # Hash in chunks so a memmap of a large set is streamed, not loaded whole.
    flat = images.reshape(images.shape[0], -1) if images.shape[0] else images.reshape(0, 0)
    for start in range(0, flat.shape[0], 4096):
        digest.update(np.ascontiguousarray(flat[start : start + 4096]).tobytes())
    return digest.hexdigest()


def is_dataset_manifest(manifest: Any) -> bool:
    """Whether a parsed manifest.json was written by facegan (current marker, or a version 1 dataset)."""
    if not isinstance(manifest, dict):
        return False
    if manifest.get("format") == FORMAT_MARKER:
        return True
    return manifest.get("format_version") == 1 and all(key in manifest for key in _V1_KEYS)


def _read_manifest_quietly(path: Path) -> Any:
    try:
        return json.loads(read_regular_file(path, 1 << 30))  # a FIFO named manifest.json must not hang us
    except (FaceganError, ValueError, RecursionError):
        return None


def absolute_path(path: str | os.PathLike) -> Path:
    """`path` made absolute without following links ('.' and '..' resolved), so it always has a name."""
    return Path(os.path.abspath(os.fspath(path)))


def paths_overlap(first: Path, second: Path) -> bool:
    """Whether two folders are the same or one lies inside the other, links resolved."""
    # realpath, not Path.resolve(): a symlink loop makes resolve() raise RuntimeError on Python 3.11.
    first, second = Path(os.path.realpath(first)), Path(os.path.realpath(second))
    return first == second or first in second.parents or second in first.parents


def check_output_folder(path: str | os.PathLike) -> Path:
    """Refuse to write a dataset anywhere but a new path, an empty folder, or a facegan dataset holding
    only facegan's own files; returns the absolute path.

    Saving replaces the folder whole, so pointing OUT at a photo folder, a web app with its own
    manifest.json, or a dataset folder where the user keeps other files would otherwise delete them.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise FaceganError(f"the dataset output must be a folder path, got {path!r}")
    given = path
    folder = absolute_path(path)
    if folder.parent == folder:
        raise FaceganError(f"output {given} is the root folder; give a new folder path for the prepared dataset")
    if folder.is_symlink():
        raise FaceganError(f"output {given} is a symbolic link; give the real folder path (it would be replaced whole)")
    try:
        here = Path.cwd().resolve()
    except OSError:  # the current folder was deleted under us
        here = None
    real = Path(os.path.realpath(folder))  # never raises on a symlink loop, unlike Path.resolve()
    if here is not None and (here == real or real in here.parents):
        raise FaceganError(f"output {given} is (or holds) the current folder; give a new folder path for the prepared dataset")
    if folder.exists():
        if not folder.is_dir():
            raise FaceganError(f"output {given} is a file, not a folder; give a folder path for the prepared dataset")
        try:
            entries = set(os.listdir(folder))
        except OSError as error:
            raise FaceganError(f"cannot read the output folder {given}: {error.strerror}") from None
        if entries:
            if not is_dataset_manifest(_read_manifest_quietly(folder / MANIFEST_NAME)):
                raise FaceganError(
                    f"output folder {given} exists and is not a prepared dataset (no facegan manifest); "
                    "choose a new or empty folder (it would be replaced whole)"
                )
            foreign = sorted(entries - DATASET_FILES)
            if foreign:
                raise FaceganError(
                    f"output folder {given} is a facegan dataset but also holds other files ({', '.join(foreign[:3])}"
                    f"{', ...' if len(foreign) > 3 else ''}); move them out or choose a new folder (it would be replaced whole)"
                )
            if not all((folder / name).is_file() and not (folder / name).is_symlink() for name in entries):
                raise FaceganError(
                    f"output folder {given} holds links or folders where dataset files should be; choose a new folder"
                )
    check_writable_folder(folder.parent, "the dataset")
    return folder


def check_split_outputs(dataset: Path, train_out: Path, holdout_out: Path) -> None:
    """Refuse split outputs that are the same folder, nested in each other, or overlap the input dataset."""
    if paths_overlap(train_out, holdout_out):
        raise FaceganError(
            f"--train-out {train_out} and --holdout-out {holdout_out} are the same folder or nested; give two separate folders"
        )
    for flag, out in (("--train-out", train_out), ("--holdout-out", holdout_out)):
        if paths_overlap(out, dataset):
            raise FaceganError(f"{flag} {out} is the input dataset {dataset} or inside/around it; give a separate folder")


def _images_stat(path: Path) -> dict[str, int]:
    info = os.stat(path)
    # Size and mtime, not the inode: a copy made with its times kept (cp -p, copytree) is still trusted.
    return {"size": int(info.st_size), "mtime_ns": int(info.st_mtime_ns)}


def _images_unchanged(images_path: Path, manifest: dict[str, Any]) -> bool:
    """Whether images.npy is the very file the manifest's content hash was computed from."""
    recorded = manifest.get("images_stat")
    if not isinstance(recorded, dict) or not isinstance(manifest.get("content_hash"), str):
        return False
    try:
        return _images_stat(images_path) == recorded
    except OSError:
        return False


def _corrupt(path: Path, what: str) -> FaceganError:
    return FaceganError(f"{path} is corrupt ({what}); {CORRUPT_HINT}")


def _check_manifest(manifest: Any, manifest_path: Path, images: np.ndarray) -> dict[str, Any]:
    """The manifest if its fields have the types and sizes facegan writes, else one FaceganError."""
    if not isinstance(manifest, dict):
        raise _corrupt(manifest_path, f"a JSON {type(manifest).__name__}, not an object")
    num_images = len(images)
    expected = {"num_images": num_images, "resolution": images.shape[1], "channels": images.shape[3]}
    for key, value in expected.items():
        stored = manifest.get(key, value)
        if not isinstance(stored, int) or isinstance(stored, bool):
            raise _corrupt(manifest_path, f"{key} is {stored!r}, not a whole number")
        if stored != value:
            raise _corrupt(manifest_path, f"{key} says {stored} but images.npy has {value}")
    for key in ("content_hash", "source", "source_kind", "alignment"):
        if key in manifest and not isinstance(manifest[key], str):
            raise _corrupt(manifest_path, f"{key} is not a string")
    for key in ("paths", "identity_names", "attribute_names"):
        values = manifest.get(key)
        if values is not None and (not isinstance(values, list) or not all(isinstance(item, str) for item in values)):
            raise _corrupt(manifest_path, f"{key} is not a list of strings")
    paths = manifest.get("paths")
    if paths and len(paths) != num_images:
        raise _corrupt(manifest_path, f"{len(paths)} paths for {num_images} images")
    skipped = manifest.get("skipped", {})
    if not isinstance(skipped, dict) or not all(
        isinstance(count, int) and not isinstance(count, bool) and count >= 0 for count in skipped.values()
    ):
        raise _corrupt(manifest_path, "skipped is not a table of counts")
    recorded = manifest.get("images_stat")
    if recorded is not None and not isinstance(recorded, dict):
        raise _corrupt(manifest_path, "images_stat is not an object")
    return manifest


def _load_labels(labels_path: Path, num_images: int, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """labels.npz checked against the images: integer arrays of the right shapes, nothing else."""
    try:
        with np.load(labels_path, allow_pickle=False) as archive:
            labels = {key: np.asarray(archive[key]) for key in archive.files}
    except Exception as error:  # noqa: BLE001 - BadZipFile, ValueError (object arrays), OSError, EOFError, ...
        raise _corrupt(labels_path, f"{type(error).__name__}: {str(error)[:100]}") from None
    shapes = {"identity": 1, "attributes": 2, "partition": 1}
    for name, values in labels.items():
        if name not in shapes:
            continue
        if values.dtype.kind not in "iu" or values.ndim != shapes[name] or len(values) != num_images:
            raise _corrupt(labels_path, f"{name} is {values.dtype} {values.shape}, expected integers for {num_images} images")
    identity_names = manifest.get("identity_names") or []
    identity = labels.get("identity")
    if identity is not None and len(identity) and identity_names and int(identity.max()) >= len(identity_names):
        raise _corrupt(labels_path, f"identity codes go up to {int(identity.max())} for {len(identity_names)} names")
    attributes = labels.get("attributes")
    attribute_names = manifest.get("attribute_names")
    if attributes is not None and attribute_names and attributes.shape[1] != len(attribute_names):
        raise _corrupt(labels_path, f"{attributes.shape[1]} attribute columns for {len(attribute_names)} names")
    return labels


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
        if not isinstance(self.images, np.ndarray) or self.images.ndim != 4 or self.images.dtype != np.uint8:
            shape = getattr(self.images, "shape", "?")
            raise FaceganError(f"FaceDataset images must be a uint8 (N, H, W, C) array, got {getattr(self.images, 'dtype', type(self.images).__name__)} {shape}")
        if not isinstance(self.manifest, dict):
            raise FaceganError(f"FaceDataset manifest must be a dict, got {type(self.manifest).__name__}")
        for name in ("identity", "attributes", "partition"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.images):
                raise FaceganError(f"{name} has {len(values)} rows for {len(self.images)} images")

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
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise FaceganError(f"a dataset must be given as a folder path, got {path!r}")
        folder = absolute_path(path)
        if not folder.exists():
            raise FaceganError(f"dataset not found: {path} (create it with `facegan data prepare SOURCE {path}`)")
        if not folder.is_dir():
            raise FaceganError(f"dataset {path} is a file; give the folder that `facegan data prepare` wrote")
        manifest_path = folder / MANIFEST_NAME
        images_path = folder / IMAGES_NAME
        if not manifest_path.is_file() or not images_path.is_file():
            raise FaceganError(
                f"{path} is not a prepared facegan dataset (no {MANIFEST_NAME}/{IMAGES_NAME}); "
                f"run `facegan data prepare SOURCE {path}`"
            )
        try:
            manifest = json.loads(read_regular_file(manifest_path, 1 << 30))
        except ReadRefused as refused:
            raise FaceganError(f"{refused}; {CORRUPT_HINT}") from None
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, absurd nesting
            raise FaceganError(f"{manifest_path} is corrupt (not JSON); {CORRUPT_HINT}") from None
        try:
            images = np.load(images_path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except Exception as error:  # noqa: BLE001 - ValueError, OSError, EOFError, MemoryError, ...
            raise FaceganError(f"{images_path} is corrupt ({type(error).__name__}); {CORRUPT_HINT}") from None
        if not isinstance(images, np.ndarray) or images.ndim != 4 or images.dtype != np.uint8:
            raise FaceganError(f"{images_path} is not a uint8 (N, H, W, C) array; {CORRUPT_HINT}")
        if images.shape[1] != images.shape[2] or images.shape[3] not in (1, 3) or images.shape[1] < 1:
            raise FaceganError(f"{images_path} holds {images.shape}, not square 1- or 3-channel images; {CORRUPT_HINT}")
        manifest = _check_manifest(manifest, manifest_path, images)
        labels: dict[str, np.ndarray] = {}
        labels_path = folder / LABELS_NAME
        if labels_path.is_file():
            labels = _load_labels(labels_path, len(images), manifest)
        if not _images_unchanged(images_path, manifest):
            # images.npy changed behind the manifest (or this dataset predates the record): the stored
            # hash cannot be trusted, or cached features of other pixels would be reused.
            manifest = {**manifest, "content_hash": compute_content_hash(images)}
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
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise FaceganError(f"cannot create {folder.parent}: {error.strerror}") from None
        manifest = dict(self.manifest)
        manifest.update(
            format=FORMAT_MARKER,
            format_version=FORMAT_VERSION,
            num_images=len(self),
            resolution=self.resolution,
            channels=self.channels,
            content_hash=compute_content_hash(self.images),
        )
        # What a killed earlier save of this folder left (SIGKILL, power cut): its half-written copy goes first.
        remove_stale_siblings(folder, "tmp")
        # os.mkdir (not mkdtemp, which is always 0700) so the dataset folder gets the user's umask.
        staging = staging_sibling(folder, "tmp")
        try:
            os.mkdir(staging, FOLDER_MODE)
        except OSError as error:
            raise FaceganError(f"cannot write the dataset in {folder.parent}: {error.strerror}") from None
        try:
            np.save(staging / IMAGES_NAME, np.ascontiguousarray(self.images), allow_pickle=False)
            labels = {
                name: values
                for name, values in (("identity", self.identity), ("attributes", self.attributes), ("partition", self.partition))
                if values is not None
            }
            if labels:
                np.savez(staging / LABELS_NAME, **labels)
            images_file = staging / IMAGES_NAME
            # Date the pixels a second back: a later write, even within the same clock tick, then
            # shows as a changed mtime and the next load re-hashes instead of trusting the manifest.
            written = os.stat(images_file)
            backdated = written.st_mtime_ns - 1_000_000_000
            os.utime(images_file, ns=(written.st_atime_ns, backdated))
            manifest["images_stat"] = _images_stat(images_file)
            (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            if folder.exists():
                # Replace an older dataset of the same name: move it aside first so a crash loses neither.
                backup = staging_sibling(folder, "old")
                os.replace(folder, backup)
                os.replace(staging, folder)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                # rename, not replace: should another prepare have created OUT meanwhile, fail
                # rather than replace its dataset (os.replace would swap an empty folder silently).
                os.rename(staging, folder)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise FaceganError(f"{folder} was created by someone else while this dataset was written; nothing was replaced, run again") from None
            raise FaceganError(f"cannot write the dataset {folder}: {error.strerror or error}") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        # A save killed between its two renames left the dataset it replaced aside: this save replaced it too.
        remove_stale_siblings(folder, "old")
        self.manifest = manifest
        self.path = folder
        return folder

    # ---- views -------------------------------------------------------------------------------
    def subset(self, indices: np.ndarray | list[int], **manifest_updates: Any) -> "FaceDataset":
        """An in-memory dataset of the given rows, labels and source paths carried along."""
        indices = np.asarray(indices, dtype=np.int64)
        manifest = {key: value for key, value in self.manifest.items() if key not in ("content_hash", "paths", "images_stat")}
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
        if isinstance(holdout, bool) or not isinstance(holdout, numbers.Real) or not 0.0 < float(holdout) < 1.0:
            raise FaceganError(f"--holdout must be a number between 0 and 1 (exclusive), got {holdout!r}")
        holdout = float(holdout)
        if not isinstance(by_identity, (bool, np.bool_)):
            raise FaceganError(f"by_identity must be True or False, got {by_identity!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise FaceganError(f"--seed must be a whole number 0 or more, got {seed!r}")
        by_identity, seed = bool(by_identity), int(seed)
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
        num_damaged_kept = self.manifest.get("num_damaged_kept")
        if isinstance(num_damaged_kept, int) and num_damaged_kept:
            lines.append(f"damaged kept {num_damaged_kept} (--keep-damaged; listed in manifest.json)")
        return "\n".join(lines)
