"""`facegan data prepare`: SOURCE (folder, CelebA, LFW, builtin:NAME) -> FaceDataset folder.

Each file is decoded exactly once, here: list the source (cheap, sorted) -> decode + align +
resize in a process pool (in order) -> write into one preallocated uint8 array -> save atomically.
Bad files never stop the run; they are counted by reason in the manifest.

This module must not import torch: workers then start fast, and a parent without torch can use
fork (see _pool_context); one that already runs torch threads gets forkserver/spawn workers.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import numbers
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from facegan.data.align import ALIGN_MODES, AlignMode, align_image, convert_channels
from facegan.data.builtin import builtin_names, is_builtin, load_builtin
from facegan.data.dataset import FaceDataset, check_output_folder, paths_overlap
from facegan.data.decode import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS, SKIP_REASONS, SkippedImage, decode_image_with_damage
from facegan.data.sources import SOURCE_LAYOUTS, SourceLayout, SourceListing, list_source
from facegan.data.workers import exit_with_parent
from facegan.errors import FaceganError
from facegan.faces.align import DLIB_CHIP_PADDING, LANDMARKS_5_NAME, load_dlib_models

# Below this many files a pool costs more to start (up to ~0.5 s with forkserver/spawn) than it
# saves; dlib spends ~0.01-0.3 s per file, so it is worth a pool much sooner.
IN_PROCESS_MAX_FILES = {"center": 64, "none": 64, "dlib": 8}
# Most files per pool task: enough to amortise pickling, few enough for a lively progress bar.
MAX_FILES_PER_TASK = 16
# Only the first this-many skipped files are listed by name; all are counted.
MAX_LISTED_SKIPS = 1000
WORKER_DIED_MESSAGE = (
    "a decoding worker process stopped unexpectedly: if you call prepare_dataset from a script, put the "
    "call under `if __name__ == '__main__':`; otherwise an image may have exhausted memory or crashed a "
    "decoder (rerun with --workers 1 to find it)"
)
# Output arrays larger than this are filled in a scratch .npy on disk instead of in memory.
IN_MEMORY_MAX_BYTES = 2 << 30


@dataclass
class PrepareConfig:
    """How to turn a SOURCE into a FaceDataset (`facegan data prepare SOURCE OUT`)."""

    source: str
    """A folder of images (searched recursively), a CelebA folder (holding img_align_celeba/), an LFW
    folder (<Person>/<Person>_0001.jpg), or builtin:NAME (e.g. builtin:lfw-subset)."""
    size: int = 64
    """Side of the square output images, in pixels."""
    align: AlignMode = "center"
    """center: central square crop; dlib: detect the largest face and align it on 5 landmarks (files
    without a face are skipped); none: squeeze the whole image to a square. Built-in sets are
    already face crops and ignore this."""
    channels: int | None = None
    """1 (grey) or 3 (RGB); None keeps the source's own (3 for image files, 1 for builtin:lfw-subset)."""
    workers: int | None = None
    """Decoding processes; None uses every available CPU core. Small jobs always run in-process."""
    limit: int | None = None
    """Only take the first LIMIT files of the source (in sorted order); None takes all."""
    progress: bool = True
    """Show a progress bar on stderr."""
    max_pixels: int = DEFAULT_MAX_PIXELS
    """Images with more pixels than this are skipped as `too_large` (decompression-bomb guard;
    the default is Pillow's, about 89 million pixels)."""
    min_side: int = 0
    """Images whose shorter side is below this many pixels are skipped as `too_small`; 0 keeps all."""
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    """Files larger than this many bytes are skipped as `too_large` before they are read (256 MiB)."""
    keep_damaged: bool = False
    """Keep JPEGs whose decoder reports corrupt data (skipped as `damaged` by default); kept ones are
    counted and listed in the manifest as `damaged_kept`."""
    layout: SourceLayout = "auto"
    """auto: detect CelebA, LFW or a plain folder; identity-folders: SOURCE/<identity>/<image>, the
    identity being the first-level folder's name (images directly in SOURCE are skipped as no_identity)."""
    identities: int | None = None
    """builtin:rendered-faces only: how many people to draw (None: 500)."""
    per_identity: int | None = None
    """builtin:rendered-faces only: images per person (None: 20)."""
    seed: int | None = None
    """builtin:rendered-faces only: the seed the faces are drawn from (None: 0); same seed, same bytes."""

    def __post_init__(self) -> None:
        if not isinstance(self.source, (str, os.PathLike)):
            raise FaceganError(f"SOURCE must be a path or builtin:NAME, got {type(self.source).__name__}")
        self.source = os.fspath(self.source)
        if not self.source:
            raise FaceganError("no SOURCE given: pass a folder of images, a CelebA/LFW folder, or builtin:lfw-subset")
        for name in ("size", "channels", "workers", "limit", "max_pixels", "min_side", "max_file_bytes", "identities", "per_identity", "seed"):
            value = getattr(self, name)
            if value is None and name in ("channels", "workers", "limit", "identities", "per_identity", "seed"):
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise FaceganError(f"--{name.replace('_', '-')} must be a whole number, got {value!r}")
            setattr(self, name, int(value))
        for name in ("progress", "keep_damaged"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise FaceganError(f"{name} must be True or False, got {value!r}")
            setattr(self, name, bool(value))
        if not 4 <= self.size <= 4096:
            raise FaceganError(f"--size must be between 4 and 4096 pixels, got {self.size}")
        if self.align not in ALIGN_MODES:
            raise FaceganError(f"--align must be one of {', '.join(ALIGN_MODES)}, got {self.align!r}")
        if self.channels not in (None, 1, 3):
            raise FaceganError(f"--channels must be 1 or 3, got {self.channels}")
        if self.workers is not None and self.workers < 1:
            raise FaceganError(f"--workers must be at least 1, got {self.workers}")
        if self.limit is not None and self.limit < 1:
            raise FaceganError(f"--limit must be at least 1, got {self.limit}")
        if self.max_pixels < 1:
            raise FaceganError(f"--max-pixels must be positive, got {self.max_pixels}")
        if self.min_side < 0:
            raise FaceganError(f"--min-side must be 0 or more, got {self.min_side}")
        if self.max_file_bytes < 1:
            raise FaceganError(f"--max-file-bytes must be positive, got {self.max_file_bytes}")
        if self.layout not in SOURCE_LAYOUTS:
            raise FaceganError(f"--layout must be one of {', '.join(SOURCE_LAYOUTS)}, got {self.layout!r}")
        rendered = [f"--{name.replace('_', '-')}" for name in ("identities", "per_identity", "seed") if getattr(self, name) is not None]
        if rendered and self.source != "builtin:rendered-faces":
            raise FaceganError(
                f"{', '.join(rendered)} {'applies' if len(rendered) == 1 else 'apply'} only to builtin:rendered-faces, "
                f"not {self.source}; drop {'it' if len(rendered) == 1 else 'them'}"
            )
        if self.layout != "auto" and is_builtin(self.source):
            raise FaceganError(f"--layout {self.layout} is for image folders; {self.source} is built-in data, drop --layout")


def prepare_dataset(
    source: str | os.PathLike,
    out: str | os.PathLike,
    size: int = 64,
    align: AlignMode = "center",
    channels: int | None = None,
    workers: int | None = None,
    limit: int | None = None,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 0,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    keep_damaged: bool = False,
    layout: SourceLayout = "auto",
    identities: int | None = None,
    per_identity: int | None = None,
    seed: int | None = None,
) -> FaceDataset:
    """Prepare SOURCE into a dataset folder OUT and return it (opened from disk). See PrepareConfig."""
    config = PrepareConfig(
        source=source,
        size=size,
        align=align,
        channels=channels,
        workers=workers,
        limit=limit,
        progress=progress,
        max_pixels=max_pixels,
        min_side=min_side,
        max_file_bytes=max_file_bytes,
        keep_damaged=keep_damaged,
        layout=layout,
        identities=identities,
        per_identity=per_identity,
        seed=seed,
    )
    return prepare_from_config(config, out)


def prepare_from_config(config: PrepareConfig, out: str | os.PathLike) -> FaceDataset:
    """Prepare a dataset as described by `config` into the folder `out`."""
    from facegan.version import __version__

    started = time.perf_counter()
    if not isinstance(config, PrepareConfig):
        raise FaceganError(f"prepare_from_config needs a PrepareConfig, got {type(config).__name__}")
    given_out = out
    out = check_output_folder(out)  # fail before the slow part, not after it
    if not is_builtin(config.source) and paths_overlap(Path(config.source).expanduser(), out):
        # Replacing OUT would delete the source images (or a later prepare would list the dataset).
        raise FaceganError(
            f"SOURCE {config.source} and OUT {given_out} are the same folder or one lies inside the other; "
            "write the dataset to a separate folder"
        )
    manifest: dict[str, Any] = {
        "source": config.source,
        "size": config.size,
        "facegan_version": __version__,
        "config": dataclasses.asdict(config),
    }
    labels: dict[str, np.ndarray | None] = {}
    with contextlib.ExitStack() as cleanup:  # removes the scratch file, if one is made, however we leave
        if is_builtin(config.source):
            images = _prepare_builtin(config, manifest, labels)
        else:
            listing = list_source(config.source, config.layout)
            if config.limit is not None:
                listing = listing.head(config.limit)
            if config.align == "dlib":
                load_dlib_models()  # a missing dlib is one error now, not one per worker later
            images = _prepare_listing(listing, config, out, manifest, labels, cleanup)
        manifest["channels"] = int(images.shape[3])
        manifest["prepare_seconds"] = round(time.perf_counter() - started, 3)
        FaceDataset(images=images, manifest=manifest, **labels).save(out)
    return FaceDataset.load(out)


# ---- built-in data ----------------------------------------------------------------------------
def _prepare_builtin(config: PrepareConfig, manifest: dict[str, Any], labels: dict[str, np.ndarray | None]) -> np.ndarray:
    name = config.source.split(":", 1)[1]
    with contextlib.ExitStack() as stack:
        bars: list[tqdm] = []

        def on_progress(count: int) -> None:
            # The bar opens with the first drawn images, so a refused option prints only its error.
            if not bars:
                bars.append(stack.enter_context(tqdm(desc="render", unit="img", disable=not config.progress, dynamic_ncols=True)))
            bars[0].update(count)

        data = load_builtin(name, config.size, config.channels, identities=config.identities,
                            per_identity=config.per_identity, seed=config.seed, on_progress=on_progress,
                            workers=config.workers)
    images = data.images[: config.limit] if config.limit is not None else data.images
    if data.identity is not None:
        labels["identity"] = np.ascontiguousarray(data.identity[: len(images)])
    if data.attributes is not None:
        labels["attributes"] = np.ascontiguousarray(data.attributes[: len(images)])
    manifest.update(
        source_kind="builtin",
        # Already face crops: --align is not applied, and the manifest says so.
        alignment="builtin-crop",
        requested_alignment=config.align,
        paths=data.paths[: len(images)],
        num_source_files=len(images),
        skipped={},
        num_skipped=0,
        skipped_files=[],
        **data.manifest,
    )
    return images


# ---- image files ------------------------------------------------------------------------------
def _prepare_listing(
    listing: SourceListing,
    config: PrepareConfig,
    out: Path,
    manifest: dict[str, Any],
    labels: dict[str, np.ndarray | None],
    cleanup: contextlib.ExitStack,
) -> np.ndarray:
    """Decode every listed file; fill `manifest` and `labels`; return the kept images."""
    channels = 3 if config.channels is None else config.channels
    num_files = len(listing)
    num_workers = _resolve_workers(config.workers, num_files, config.align)
    images = _allocate_images((num_files, config.size, config.size, channels), out, cleanup)

    kept_indices: list[int] = []
    skipped_counts: Counter[str] = Counter()
    skipped_files: list[dict[str, str]] = []
    damaged_kept: list[dict[str, str]] = []
    num_damaged_kept = 0
    paths = [str(path) for path in listing.files]
    with (
        _prepared_outcomes(paths, config, channels, num_workers) as outcomes,
        tqdm(total=num_files, desc="prepare", unit="img", disable=not config.progress, dynamic_ncols=True) as bar,
    ):
        for index, (image, reason, detail) in enumerate(outcomes):
            if image is not None:
                images[len(kept_indices)] = image  # kept images are packed at the front, in source order
                kept_indices.append(index)
                if reason == "damaged":  # kept because of --keep-damaged
                    num_damaged_kept += 1
                    if len(damaged_kept) < MAX_LISTED_SKIPS:
                        damaged_kept.append({"path": listing.relative_paths[index], "detail": detail})
            else:
                skipped_counts[reason] += 1
                if len(skipped_files) < MAX_LISTED_SKIPS:
                    skipped_files.append({"path": listing.relative_paths[index], "reason": reason, "detail": detail})
                bar.set_postfix(skipped=sum(skipped_counts.values()), refresh=False)
            bar.update(1)

    for folder, why in listing.unreadable_folders:
        # A folder that could not be listed hides its images: count it rather than lose them silently.
        skipped_counts["unreadable"] += 1
        if len(skipped_files) < MAX_LISTED_SKIPS:
            skipped_files.append({"path": folder + "/", "reason": "unreadable", "detail": f"folder: {why}"})

    for path, why in listing.ignored_files:
        skipped_counts[why] += 1
        if len(skipped_files) < MAX_LISTED_SKIPS:
            skipped_files.append({"path": path, "reason": why, "detail": "image directly in SOURCE, outside any identity folder"})

    if not kept_indices:
        raise FaceganError(_nothing_kept_message(config.source, num_files, skipped_counts, config.align))

    kept = np.asarray(kept_indices, dtype=np.int64)
    manifest.update(
        source_kind=listing.kind,
        alignment=_alignment_name(config.align),
        paths=[listing.relative_paths[index] for index in kept_indices],
        num_source_files=num_files,
        num_skipped=int(sum(skipped_counts.values())),
        skipped=dict(sorted(skipped_counts.items())),
        skipped_files=skipped_files,
        num_damaged_kept=num_damaged_kept,
        damaged_kept_files=damaged_kept,
        num_workers=num_workers,
        **listing.extra_manifest,
    )
    if config.align == "dlib":
        manifest["alignment_details"] = {
            "detector": "dlib HOG frontal_face_detector (largest face)",
            "landmarks": LANDMARKS_5_NAME,
            "chip_padding": DLIB_CHIP_PADDING,
        }
    if listing.identity_names is not None:
        identity, identity_names = _encode_identities([listing.identity_names[index] for index in kept_indices])
        labels["identity"] = identity
        manifest["identity_names"] = identity_names
    if listing.attributes is not None:
        labels["attributes"] = np.ascontiguousarray(listing.attributes[kept], dtype=np.int8)
        manifest["attribute_names"] = list(listing.attribute_names or [])
    if listing.partition is not None:
        labels["partition"] = np.ascontiguousarray(listing.partition[kept], dtype=np.int8)
    return images[: len(kept_indices)]


ImageOutcome = tuple[np.ndarray | None, str, str]  # (image or None, skip reason, detail)


def prepare_image(
    path: str | os.PathLike,
    size: int,
    align: AlignMode = "center",
    channels: int = 3,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 0,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    keep_damaged: bool = False,
) -> np.ndarray:
    """One file -> uint8 (size, size, channels); raises SkippedImage when it cannot be used."""
    image, damage = _prepare_image_with_damage(path, size, align, channels, max_pixels, min_side, max_file_bytes)
    if damage and not keep_damaged:
        raise SkippedImage("damaged", damage)
    return image


def _prepare_image_with_damage(
    path: str | os.PathLike,
    size: int,
    align: AlignMode,
    channels: int,
    max_pixels: int,
    min_side: int,
    max_file_bytes: int,
) -> tuple[np.ndarray, str]:
    # Decoding JPEGs at a reduced DCT scale is nearly free and keeps >= 2x the output size for the
    # antialiased resize; dlib needs the full resolution to place landmarks accurately.
    draft_size = None if align == "dlib" else (2 * size, 2 * size)
    rgb, damage = decode_image_with_damage(
        path, max_pixels=max_pixels, draft_size=draft_size, min_side=min_side, max_file_bytes=max_file_bytes
    )
    aligned = align_image(rgb, size, align)
    if aligned is None:
        raise SkippedImage("no_face")
    return convert_channels(aligned, channels), damage


def _prepare_one(path: str, config: PrepareConfig, channels: int) -> ImageOutcome:
    try:
        image, damage = _prepare_image_with_damage(
            path, config.size, config.align, channels, config.max_pixels, config.min_side, config.max_file_bytes
        )
    except SkippedImage as skipped:
        return None, skipped.reason, skipped.detail
    if damage:
        if not config.keep_damaged:
            return None, "damaged", damage
        return image, "damaged", damage  # kept, but the manifest lists it
    return image, "", ""


# Set once per worker process by _init_worker, so each task ships only file paths.
_WORKER_STATE: tuple[PrepareConfig, int] | None = None


def _init_worker(config: PrepareConfig, channels: int) -> None:
    global _WORKER_STATE
    exit_with_parent()
    _WORKER_STATE = (config, channels)


def _prepare_chunk(paths: list[str]) -> list[ImageOutcome]:
    assert _WORKER_STATE is not None, "worker used without _init_worker"
    config, channels = _WORKER_STATE
    return [_prepare_one(path, config, channels) for path in paths]


@contextlib.contextmanager
def _prepared_outcomes(
    paths: list[str], config: PrepareConfig, channels: int, num_workers: int
) -> Iterator[Iterator[ImageOutcome]]:
    """Outcomes in the order of `paths`, whatever the number of workers.

    Enter it before starting a progress bar: the worker processes are started on entry, while
    the parent may still be single-threaded (see _pool_context).
    """
    if num_workers <= 1:
        yield (_prepare_one(path, config, channels) for path in paths)
        return
    # At least ~4 tasks per worker, so a small job still spreads over every worker.
    files_per_task = max(1, min(MAX_FILES_PER_TASK, len(paths) // (4 * num_workers)))
    chunks = [paths[start : start + files_per_task] for start in range(0, len(paths), files_per_task)]
    # ProcessPoolExecutor rather than multiprocessing.Pool: when a worker dies (killed for memory,
    # a crash in a native decoder) it raises BrokenProcessPool instead of waiting forever.
    executor = ProcessPoolExecutor(
        num_workers, mp_context=_pool_context(), initializer=_init_worker, initargs=(config, channels)
    )
    try:
        try:
            # map (not as_completed): results come back in source order, so the output does not
            # depend on the number of workers or on scheduling. It submits every chunk now.
            chunk_outcomes = executor.map(_prepare_chunk, chunks)
        except BrokenProcessPool:
            raise FaceganError(WORKER_DIED_MESSAGE) from None
        yield _flatten_chunks(chunk_outcomes)
    finally:
        # On an error or Ctrl-C, drop the queued chunks instead of finishing them.
        executor.shutdown(wait=True, cancel_futures=True)


def _flatten_chunks(chunk_outcomes: Iterator[list[ImageOutcome]]) -> Iterator[ImageOutcome]:
    try:
        for outcomes in chunk_outcomes:
            yield from outcomes
    except BrokenProcessPool:
        raise FaceganError(WORKER_DIED_MESSAGE) from None


def _pool_context() -> multiprocessing.context.BaseContext:
    """fork where it is safe (fastest, and scripts need no __main__ guard), else forkserver/spawn.

    A forked child inherits every lock other threads hold at that instant, so fork only a
    single-threaded parent that has not loaded torch (whose OpenMP pool lives outside `threading`).
    """
    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and "torch" not in sys.modules and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _resolve_workers(requested: int | None, num_files: int, align: AlignMode) -> int:
    """Worker processes to use; 1 means decode in this process."""
    if num_files < IN_PROCESS_MAX_FILES[align]:
        return 1
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(requested or available, num_files))


def _allocate_images(shape: tuple[int, int, int, int], out: Path, cleanup: contextlib.ExitStack) -> np.ndarray:
    """An uninitialised uint8 array of `shape`; beyond IN_MEMORY_MAX_BYTES, a scratch .npy beside OUT
    (deleted by `cleanup`), so preparing a large set needs disk rather than RAM."""
    if math.prod(shape) <= IN_MEMORY_MAX_BYTES:
        return np.empty(shape, dtype=np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle, name = tempfile.mkstemp(prefix=f".{out.name}.scratch-", suffix=".npy", dir=out.parent)
        os.close(handle)
        cleanup.callback(Path(name).unlink, missing_ok=True)
        images = np.lib.format.open_memmap(name, mode="w+", dtype=np.uint8, shape=shape)
        # Reserve the blocks now: a memmap that runs out of disk later dies of SIGBUS, not an error.
        if hasattr(os, "posix_fallocate"):
            with open(name, "r+b") as scratch:
                os.posix_fallocate(scratch.fileno(), 0, os.fstat(scratch.fileno()).st_size)
    except OSError as error:
        raise FaceganError(
            f"cannot make the {math.prod(shape) >> 20} MiB scratch file beside {out}: {error.strerror or error}"
        ) from None
    return images


ALIGNMENT_NAMES = {"dlib": "dlib-5point", "center": "center-crop", "none": "resize"}


def _alignment_name(align: AlignMode) -> str:
    return ALIGNMENT_NAMES[align]


def alignment_of(manifest: dict) -> str | None:
    """The `--align` mode that prepared a dataset (dlib/center/none), or None for built-in crops and drawn faces:
    a new photo prepared with it is framed as the dataset's faces are."""
    recorded = manifest.get("alignment")
    return next((mode for mode, name in ALIGNMENT_NAMES.items() if name == recorded), None)


def _encode_identities(names: list[str | None]) -> tuple[np.ndarray, list[str]]:
    """Person names (None = unknown) -> int64 codes (-1 = unknown) and the sorted list of names."""
    unique = sorted({name for name in names if name is not None}, key=_identity_sort_key)
    code_of = {name: code for code, name in enumerate(unique)}
    identity = np.array([-1 if name is None else code_of[name] for name in names], dtype=np.int64)
    return identity, unique


def _identity_sort_key(name: str) -> tuple[bool, int, str]:
    # Numeric ids (CelebA) sort as numbers (9 before 17), names (LFW) alphabetically after them.
    return (not name.isdigit(), int(name) if name.isdigit() else 0, name)


def _nothing_kept_message(source: str, num_files: int, skipped: Counter[str], align: str) -> str:
    reasons = ", ".join(f"{reason} {count}" for reason, count in skipped.most_common(3))
    hint = "check that SOURCE holds readable JPEG/PNG/WebP/BMP images"
    if skipped.most_common(1)[0][0] == "no_face" and align == "dlib":
        hint = "dlib found no faces; try --align center if the images are already face crops"
    return f"no usable images in {source}: all {num_files} files were skipped ({reasons}); {hint}"


__all__ = [
    "PrepareConfig",
    "prepare_dataset",
    "prepare_from_config",
    "prepare_image",
    "SKIP_REASONS",
    "builtin_names",
]
