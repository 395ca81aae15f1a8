"""A projection folder: latents.npy, extended.npy, reconstructions/*.png, grid.png, projection.json; and the targets' reader.

    DIR/latents.npy          float32 (N, z_dim)      z per target (what `facegan edit --latents` reads)
    DIR/extended.npy         float32 (N, D)          the optimised first activation (only when extended)
    DIR/reconstructions/     0000.png ...            one reconstruction per target, in target order
    DIR/grid.png                                     targets (odd rows) above their reconstructions (even rows)
    DIR/projection.json                              per image psnr/ssim/face_distance/loss, means, settings
"""
from __future__ import annotations

import io
import math
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from facegan.errors import FaceganError
from facegan.provenance.record import Provenance
from facegan.inversion.projector import ProjectionResult

PROJECTION_FORMAT = "facegan-projection"
PROJECTION_VERSION = 1
JSON_NAME = "projection.json"
LATENTS_NAME = "latents.npy"
EXTENDED_NAME = "extended.npy"
GRID_NAME = "grid.png"
RECONSTRUCTIONS_DIR = "reconstructions"
OWN_ENTRIES = frozenset((JSON_NAME, LATENTS_NAME, EXTENDED_NAME, GRID_NAME, RECONSTRUCTIONS_DIR))
GRID_COLUMNS = 8
MAX_GRID_IMAGES = 256


def _finite_or_none(value: float) -> float | None:
    # JSON has no inf: PSNR of an exact reconstruction is inf, written as null ("no error to measure").
    return float(value) if math.isfinite(float(value)) else None


def check_projection_out(folder: str | os.PathLike) -> Path:
    """A new or empty folder, or an earlier projection folder holding only projection files; else one clear line."""
    from facegan.config import load_json
    from facegan.files import check_writable_folder

    path = Path(os.path.abspath(folder))
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise FaceganError(f"cannot use --out {folder}: {error.strerror}") from None
    if mode is not None:
        if stat.S_ISLNK(mode):
            raise FaceganError(f"--out {folder} is a symbolic link; give the real folder path")
        if not stat.S_ISDIR(mode):
            raise FaceganError(f"--out {folder} exists and is not a folder; give a new folder for the projection")
        entries = set(os.listdir(path))
        if entries:
            try:
                record = load_json(path / JSON_NAME, "projection record") if JSON_NAME in entries else None
            except FaceganError:
                record = None
            if not isinstance(record, dict) or record.get("format") != PROJECTION_FORMAT:
                raise FaceganError(f"--out {folder} exists and is not a facegan projection folder; choose a new or empty folder "
                                   "(its files would be replaced)")
            foreign = sorted(entries - OWN_ENTRIES)
            if foreign:
                raise FaceganError(f"--out {folder} is a projection folder but also holds other files ({', '.join(foreign[:3])}); "
                                   "move them out or choose a new folder")
    check_writable_folder(path, "the projection")
    return path


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def projection_record(result: ProjectionResult, source: str | None = None, model: str | None = None) -> dict[str, Any]:
    """What projection.json holds: per image figures, their means, the settings."""
    rows = []
    for index in range(len(result)):
        rows.append({
            "index": index, "name": result.names[index] if result.names else None,
            "psnr": _finite_or_none(result.psnr[index]), "ssim": float(result.ssim[index]),
            "face_distance": float(result.face_distance[index]), "loss": float(result.loss[index]),
        })
    finite_psnr = result.psnr[np.isfinite(result.psnr)]
    return {
        "format": PROJECTION_FORMAT, "format_version": PROJECTION_VERSION, "model": model, "source": source,
        "count": len(result), "z_dim": int(result.z.shape[1]), "resolution": int(result.images.shape[1]),
        "channels": int(result.images.shape[3]),
        "extended_dim": None if result.extended is None else int(result.extended.shape[1]),
        "mean": {
            "psnr": float(finite_psnr.mean()) if len(finite_psnr) else None, "ssim": float(result.ssim.mean()),
            "face_distance": float(result.face_distance.mean()),
            "same_person_rate": float((result.face_distance < 0.6).mean()),
        },
        "settings": dict(result.settings), "images": rows,
    }


def save_projection(folder: str | os.PathLike, result: ProjectionResult, targets: np.ndarray | None = None,
                    source: str | None = None, model: str | None = None, provenance: Provenance | None = None) -> Path:
    """Write a projection folder (see the module docstring); `targets` (uint8 NHWC) go above the reconstructions in grid.png.

    Reconstructions are made entirely by the generator (trained algorithmic media); the grid shows the
    real targets beside them (a composite). `provenance` defaults to an unsigned record of that kind.
    """
    from facegan.config import save_json
    from facegan.files import write_bytes_atomic
    from facegan.images import make_grid, save_png
    from facegan.provenance.record import COMPOSITE, TRAINED

    provenance = provenance or Provenance(source_type=TRAINED, action="project")

    path = check_projection_out(folder)
    path.mkdir(parents=True, exist_ok=True)
    reconstructions = path / RECONSTRUCTIONS_DIR
    if reconstructions.is_dir():
        # Files of an earlier, larger projection would otherwise sit beside the new ones and be read back.
        for stale in reconstructions.iterdir():
            if stale.is_file() and stale.suffix == ".png":
                stale.unlink()
    for index, image in enumerate(result.images):
        save_png(image, reconstructions / f"{index:04d}.png", provenance.with_source(TRAINED))
    write_bytes_atomic(path / LATENTS_NAME, _npy_bytes(result.z.astype(np.float32)))
    if result.extended is not None:
        write_bytes_atomic(path / EXTENDED_NAME, _npy_bytes(result.extended.astype(np.float32)))
    elif (path / EXTENDED_NAME).is_file():
        (path / EXTENDED_NAME).unlink()  # from an earlier extended projection; it would not match these latents
    shown = min(len(result), MAX_GRID_IMAGES)
    if targets is not None:
        rows = []
        for begin in range(0, shown, GRID_COLUMNS):
            stop = min(begin + GRID_COLUMNS, shown)
            rows += [targets[begin:stop], result.images[begin:stop]]
            if stop - begin < GRID_COLUMNS and begin > 0:  # a short last pair of rows: pad with white to keep the columns
                pad = np.full((GRID_COLUMNS - (stop - begin), *result.images.shape[1:]), 255, np.uint8)
                rows[-2], rows[-1] = np.concatenate([rows[-2], pad]), np.concatenate([rows[-1], pad])
        grid = make_grid(np.concatenate(rows), num_columns=min(GRID_COLUMNS, shown))
    else:
        grid = make_grid(result.images[:shown], num_columns=min(GRID_COLUMNS, shown))
    save_png(grid, path / GRID_NAME, provenance.with_source(COMPOSITE if targets is not None else TRAINED))
    save_json({**projection_record(result, source, model), "provenance": provenance.summary()}, path / JSON_NAME)
    return path


def load_projection(folder: str | os.PathLike) -> ProjectionResult:
    """Read a projection folder written by `save_projection` back into a ProjectionResult."""
    from facegan.config import load_json
    from facegan.data.decode import SkippedImage, decode_image

    path = Path(folder)
    record = load_json(path / JSON_NAME, "projection record")
    if not isinstance(record, dict) or record.get("format") != PROJECTION_FORMAT:
        raise FaceganError(f"{path} is not a facegan projection folder (no {JSON_NAME} of format {PROJECTION_FORMAT})")
    version = record.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= PROJECTION_VERSION:
        raise FaceganError(f"{path / JSON_NAME} has format_version {version!r:.20}; this facegan reads version {PROJECTION_VERSION}")
    z = load_latents(path / LATENTS_NAME)
    rows = record.get("images")
    if not isinstance(rows, list) or len(rows) != len(z):
        raise FaceganError(f"{path / JSON_NAME} lists {len(rows) if isinstance(rows, list) else 'no'} images for {len(z)} latents; project again")
    extended = None
    if record.get("extended_dim") is not None:
        extended = _load_array(path / EXTENDED_NAME, "extended latents")
        if extended.ndim != 2 or len(extended) != len(z):
            raise FaceganError(f"{path / EXTENDED_NAME} has shape {extended.shape}, expected ({len(z)}, D); project again")
    images = []
    for index in range(len(z)):
        file = path / RECONSTRUCTIONS_DIR / f"{index:04d}.png"
        try:
            image = decode_image(file)
        except SkippedImage as skipped:
            raise FaceganError(f"cannot read {file} ({skipped}); project again") from None
        images.append(image)
    stacked = np.stack(images)
    channels = record.get("channels")
    if channels == 1 or (channels is None and np.array_equal(stacked[..., 0], stacked[..., 1]) and np.array_equal(stacked[..., 0], stacked[..., 2])):
        stacked = stacked[..., :1]  # decode_image returns RGB; a grey projection is stored as grey PNGs

    def column(key: str, missing: float) -> np.ndarray:
        return np.array([missing if row.get(key) is None else row[key] for row in rows], dtype=np.float64)

    names = [row.get("name") for row in rows]
    return ProjectionResult(
        z=z, images=np.ascontiguousarray(stacked), psnr=column("psnr", math.inf), ssim=column("ssim", math.nan),
        face_distance=column("face_distance", math.nan), loss=column("loss", math.nan), extended=extended,
        settings=dict(record.get("settings") or {}), names=names if any(name is not None for name in names) else None,
    )


def _load_array(file: Path, what: str) -> np.ndarray:
    try:
        array = np.load(file, allow_pickle=False)
    except FileNotFoundError:
        raise FaceganError(f"{what} file not found: {file}") from None
    except (OSError, ValueError, EOFError) as error:
        raise FaceganError(f"cannot read {what} from {file} ({str(error).splitlines()[0] if str(error) else type(error).__name__}); "
                           "give a .npy written by `facegan project`") from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
        raise FaceganError(f"{file} does not hold a float array ({getattr(array, 'dtype', type(array).__name__)}); give latents.npy from `facegan project`")
    if not np.isfinite(array).all():
        raise FaceganError(f"{file} contains NaN or infinite values; project again")
    return array.astype(np.float32)


def load_latents(file: str | os.PathLike, z_dim: int | None = None) -> np.ndarray:
    """latents.npy (float (N, z_dim)) as float32, checked; a projection folder may be given for its latents.npy."""
    file = Path(file)
    if file.is_dir():
        file = file / LATENTS_NAME
    array = _load_array(file, "latents")
    if array.ndim != 2 or len(array) == 0:
        raise FaceganError(f"{file} has shape {array.shape}; latents are (N, z_dim) with N >= 1")
    if z_dim is not None and array.shape[1] != z_dim:
        raise FaceganError(f"{file} holds {array.shape[1]}-D latents, the generator takes {z_dim}-D z; project with this generator")
    return array


def read_targets(source: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """A prepared dataset, an image folder (sorted, recursive) or one image file -> uint8 (N, H, W, C) and names.

    Every image must have one size (no resizing here: prepare them with `facegan data prepare --size`).
    """
    from facegan.data.dataset import MANIFEST_NAME, FaceDataset
    from facegan.data.decode import SkippedImage, decode_image
    from facegan.data.sources import find_image_files

    path = Path(source)
    if not path.exists():
        raise FaceganError(f"no such dataset, image folder or image: {source}")
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        dataset = FaceDataset.load(path)
        images = np.asarray(dataset.images)
        if len(images) == 0:
            raise FaceganError(f"the dataset {source} holds no images")
        return np.ascontiguousarray(images), [f"{index}" for index in range(len(images))]
    files = [path] if path.is_file() else find_image_files(path)
    if not files:
        raise FaceganError(f"{source} holds no images (.jpg, .png, .webp, .bmp) and is not a prepared dataset")
    images = []
    for file in files:
        try:
            images.append(decode_image(file))
        except SkippedImage as skipped:
            raise FaceganError(f"cannot read {file} ({skipped}); remove or fix it") from None
        if images[-1].shape != images[0].shape:
            raise FaceganError(f"{file} is {images[-1].shape[1]}x{images[-1].shape[0]}, {files[0]} is "
                               f"{images[0].shape[1]}x{images[0].shape[0]}; give images of one size "
                               "(prepare them with `facegan data prepare SRC OUT --size N`)")
    names = [str(file.relative_to(path)) if path.is_dir() else file.name for file in files]
    return np.stack(images), names
