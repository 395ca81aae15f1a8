"""Finding what a SOURCE holds: its kind (folder, CelebA, LFW), its image files and their labels.

Nothing here decodes pixels; listing a source is cheap and deterministic (sorted paths), so the
same source always yields the same item order and therefore the same content hash.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from facegan.errors import FaceganError

SourceKind = Literal["folder", "celeba", "lfw", "identity-folders", "builtin"]
# auto: detect CelebA / LFW / a plain folder; identity-folders: SOURCE/<identity>/<image>.
SourceLayout = Literal["auto", "identity-folders"]
SOURCE_LAYOUTS: tuple[str, ...] = ("auto", "identity-folders")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

CELEBA_IMAGES_DIR = "img_align_celeba"
CELEBA_ATTRIBUTES_FILE = "list_attr_celeba.txt"
CELEBA_IDENTITY_FILE = "identity_CelebA.txt"
CELEBA_PARTITION_FILE = "list_eval_partition.txt"
LFW_PAIRS_FILE = "pairs.txt"

# LFW names every image <Person>_<4 digits> inside a folder named <Person>.
_LFW_STEM = re.compile(r"^(?P<person>.+)_(?P<number>\d+)$")

SOURCE_HELP = "give a folder of images, a CelebA folder (with img_align_celeba/), an LFW folder, builtin:lfw-subset or builtin:rendered-faces"


@dataclass
class SourceListing:
    """The image files of a source, in order, with whatever labels the source provides.

    Label arrays are aligned with `files`; unknown values are None (identity), 0 (attributes) or -1
    (partition), so a file missing from a label list is kept rather than dropped.
    """

    kind: SourceKind
    root: Path
    files: list[Path]
    relative_paths: list[str]
    identity_names: list[str | None] | None = None
    attributes: np.ndarray | None = None  # int8 (num_files, num_attributes) in {-1, 0, 1}
    attribute_names: list[str] | None = None
    partition: np.ndarray | None = None  # int8 (num_files,): 0 train, 1 valid, 2 test, -1 unknown
    extra_manifest: dict[str, Any] = field(default_factory=dict)
    unreadable_folders: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    # Images found but not used, each (relative path, reason), e.g. loose files beside identity folders.
    ignored_files: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files)

    def head(self, count: int) -> "SourceListing":
        """The first `count` files with their labels (for --limit)."""
        pick = lambda values: None if values is None else values[:count]  # noqa: E731
        return SourceListing(
            kind=self.kind,
            root=self.root,
            files=self.files[:count],
            relative_paths=self.relative_paths[:count],
            identity_names=pick(self.identity_names),
            attributes=pick(self.attributes),
            attribute_names=self.attribute_names,
            partition=pick(self.partition),
            extra_manifest=dict(self.extra_manifest),
            unreadable_folders=list(self.unreadable_folders),
            ignored_files=list(self.ignored_files),
        )


def list_source(source: str | os.PathLike, layout: SourceLayout = "auto") -> SourceListing:
    """List the images and labels of `source`: its kind detected (`auto`) or given (`identity-folders`)."""
    if layout not in SOURCE_LAYOUTS:
        raise FaceganError(f"--layout must be one of {', '.join(SOURCE_LAYOUTS)}, got {layout!r}")
    root = Path(source).expanduser()
    if not root.exists():
        raise FaceganError(f"source not found: {source} ({SOURCE_HELP})")
    if not root.is_dir():
        raise FaceganError(f"source {source} is a file, not a folder ({SOURCE_HELP})")
    if layout == "identity-folders":
        return _list_identity_folders(root, source)
    if (root / CELEBA_IMAGES_DIR).is_dir():
        return _list_celeba(root, source)
    unreadable: list[tuple[str, str]] = []
    files = find_image_files(root, unreadable)
    if not files:
        raise FaceganError(
            f"no images found in {source} (looked recursively for {', '.join(IMAGE_EXTENSIONS)}); "
            "point SOURCE at the folder that holds the pictures"
        )
    relative_paths = [_relative(path, root) for path in files]
    persons = _lfw_persons(files)
    if persons is not None:
        pairs = _find_lfw_pairs(root)
        return SourceListing(
            kind="lfw",
            root=root,
            files=files,
            relative_paths=relative_paths,
            identity_names=list(persons),
            extra_manifest={"pairs_txt": None if pairs is None else str(pairs)},
            unreadable_folders=unreadable,
        )
    return SourceListing(kind="folder", root=root, files=files, relative_paths=relative_paths, unreadable_folders=unreadable)


def find_image_files(root: Path, unreadable: list[tuple[str, str]] | None = None) -> list[Path]:
    """Every file under `root` with an image extension (any case), sorted by relative path.

    Sub-folders that cannot be listed (permission denied) are appended to `unreadable` as
    (relative path, reason), so they are counted instead of silently missing.
    """
    found: list[tuple[str, Path]] = []

    def note_unreadable(error: OSError) -> None:
        if unreadable is not None and error.filename is not None:
            try:
                relative = _relative(Path(error.filename), root)
            except ValueError:
                relative = str(error.filename)
            unreadable.append((relative, error.strerror or type(error).__name__))

    visited: set[Path] = set()
    root_real = root.resolve()
    # followlinks so symlinked sub-folders count; `visited` stops a link loop from recursing forever.
    for folder, subfolders, names in os.walk(root, followlinks=True, onerror=note_unreadable):
        real = Path(folder).resolve()
        if real in visited or _is_pseudo_filesystem(real, root_real):
            subfolders[:] = []
            continue
        visited.add(real)
        subfolders.sort()
        for name in names:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                path = Path(folder) / name
                found.append((_relative(path, root), path))
    found.sort(key=lambda pair: pair[0])
    return [path for _, path in found]


# Kernel pseudo-filesystems: a link into them (`sys -> /`, `dev -> /dev`) would make the listing
# crawl endless process trees and devices instead of photos.
_PSEUDO_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


def _is_pseudo_filesystem(real: Path, root_real: Path) -> bool:
    for pseudo in _PSEUDO_ROOTS:
        inside = real == pseudo or pseudo in real.parents
        if inside and not (root_real == pseudo or pseudo in root_real.parents):
            return True
    return False


# ---- SOURCE/<identity>/<image> ------------------------------------------------------------------
def _list_identity_folders(root: Path, source: str | os.PathLike) -> SourceListing:
    """One identity per first-level folder (its name); images anywhere below it belong to it.

    Hidden folders and files (.git, .ipynb_checkpoints, macOS ._* twins) are passed over; images lying
    directly in SOURCE have no identity and are listed as ignored (`no_identity`), so they are
    counted in the manifest rather than silently labelled or dropped.
    """
    unreadable: list[tuple[str, str]] = []
    found = find_image_files(root, unreadable)
    files: list[Path] = []
    relative_paths: list[str] = []
    identity_names: list[str | None] = []
    ignored: list[tuple[str, str]] = []
    num_hidden = 0
    for path in found:
        relative = _relative(path, root)
        parts = relative.split("/")
        if any(part.startswith(".") for part in parts):
            num_hidden += 1
            continue
        if len(parts) == 1:
            ignored.append((relative, "no_identity"))
            continue
        files.append(path)
        relative_paths.append(relative)
        identity_names.append(parts[0])
    if not files:
        loose = f"; the {len(ignored)} images directly in it belong to no identity" if ignored else ""
        raise FaceganError(
            f"no images in identity folders under {source}{loose}; --layout identity-folders expects "
            "SOURCE/<identity>/<image> (one folder per person)"
        )
    folders = sorted(
        entry.name for entry in _scan_folders(root) if not entry.name.startswith(".")
    )
    empty = sorted(set(folders) - set(identity_names))
    return SourceListing(
        kind="identity-folders",
        root=root,
        files=files,
        relative_paths=relative_paths,
        identity_names=identity_names,
        extra_manifest={
            "layout": "identity-folders",
            "num_identity_folders": len(set(identity_names)),
            "empty_identity_folders": empty[:100],
            "num_empty_identity_folders": len(empty),
            "num_hidden_files_ignored": num_hidden,
        },
        unreadable_folders=unreadable,
        ignored_files=ignored,
    )


def _scan_folders(root: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(root) as entries:
            return [entry for entry in entries if entry.is_dir()]
    except OSError:
        return []


# ---- LFW --------------------------------------------------------------------------------------
def _lfw_persons(files: list[Path]) -> list[str] | None:
    """Each file's person if every file looks like LFW's <Person>/<Person>_NNNN.ext, else None.

    At least two persons are required: one folder of camera-numbered shots (trip/trip_0001.jpg)
    is a plain folder, not a one-person LFW.
    """
    persons = []
    for path in files:
        match = _LFW_STEM.match(path.stem)
        if match is None or match["person"] != path.parent.name:
            return None
        persons.append(match["person"])
    return persons if len(set(persons)) >= 2 else None


def _find_lfw_pairs(root: Path) -> Path | None:
    # pairs.txt is downloaded separately from the image archive, so it often sits beside `lfw/`.
    for candidate in (root / LFW_PAIRS_FILE, root.parent / LFW_PAIRS_FILE):
        if candidate.is_file():
            return candidate.resolve()
    return None


# ---- CelebA -----------------------------------------------------------------------------------
def _list_celeba(root: Path, source: str | os.PathLike) -> SourceListing:
    images_dir = root / CELEBA_IMAGES_DIR
    # Recursive, because the Kaggle copy nests img_align_celeba/img_align_celeba/.
    unreadable: list[tuple[str, str]] = []
    files = find_image_files(images_dir, unreadable)
    if not files:
        raise FaceganError(
            f"no images found in {images_dir} (looked recursively for {', '.join(IMAGE_EXTENSIONS)}); "
            "extract img_align_celeba.zip there"
        )
    relative_paths = [_relative(path, root) for path in files]
    # Label files name images like 000001.jpg; match on the stem so re-encoded copies (.png) still match.
    stems = [path.stem for path in files]
    listing = SourceListing(
        kind="celeba", root=root, files=files, relative_paths=relative_paths,
        unreadable_folders=[(f"{CELEBA_IMAGES_DIR}/{path}", reason) for path, reason in unreadable],
    )
    label_files: dict[str, str] = {}

    attributes_path = root / CELEBA_ATTRIBUTES_FILE
    if attributes_path.is_file():
        names, rows = _read_celeba_attributes(attributes_path)
        attributes = np.zeros((len(files), len(names)), dtype=np.int8)
        for index, stem in enumerate(stems):
            row = rows.get(stem)
            if row is not None:
                attributes[index] = row
        listing.attributes, listing.attribute_names = attributes, names
        label_files["attributes"] = CELEBA_ATTRIBUTES_FILE

    identity_path = root / CELEBA_IDENTITY_FILE
    if identity_path.is_file():
        identities = _read_two_columns(identity_path, lambda value: str(int(value)))
        listing.identity_names = [identities.get(stem) for stem in stems]
        label_files["identity"] = CELEBA_IDENTITY_FILE

    partition_path = root / CELEBA_PARTITION_FILE
    if partition_path.is_file():
        partitions = _read_two_columns(partition_path, _parse_partition)
        listing.partition = np.array([partitions.get(stem, -1) for stem in stems], dtype=np.int8)
        label_files["partition"] = CELEBA_PARTITION_FILE

    listing.extra_manifest["label_files"] = label_files
    return listing


def _read_celeba_attributes(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """list_attr_celeba.txt: a count line, a line of attribute names, then `file v1 ... vA` with v in {-1, 1}."""
    lines = _read_lines(path)
    if len(lines) < 2:
        raise FaceganError(f"{path} is too short: expected a count line and a line of attribute names")
    names = lines[1].split()
    if not names:
        raise FaceganError(f"{path}:2 should list the attribute names")
    rows: dict[str, np.ndarray] = {}
    for line_number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise FaceganError(
                f"{path}:{line_number} has {len(parts) - 1} values for {len(names)} attributes; "
                "re-download the CelebA annotation files"
            )
        try:
            values = np.array([int(value) for value in parts[1:]], dtype=np.int8)
        except ValueError:
            raise FaceganError(f"{path}:{line_number} has a value that is not -1 or 1") from None
        if not np.all(np.isin(values, (-1, 0, 1))):
            raise FaceganError(f"{path}:{line_number} has a value that is not -1 or 1")
        rows[Path(parts[0]).stem] = values
    return names, rows


def _read_two_columns(path: Path, parse: Any) -> dict[str, Any]:
    """`file value` per line (identity_CelebA.txt, list_eval_partition.txt), keyed by file stem."""
    table: dict[str, Any] = {}
    for line_number, line in enumerate(_read_lines(path), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise FaceganError(f"{path}:{line_number} should be `FILE VALUE`, got {line.strip()!r}")
        try:
            table[Path(parts[0]).stem] = parse(parts[1])
        except ValueError:
            raise FaceganError(f"{path}:{line_number} has an invalid value {parts[1]!r}") from None
    return table


def _parse_partition(value: str) -> int:
    partition = int(value)
    if partition not in (0, 1, 2):
        raise ValueError(value)
    return partition


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise FaceganError(f"cannot read {path}: {error.strerror}") from None


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
