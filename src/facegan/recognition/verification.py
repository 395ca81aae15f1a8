"""Face verification of any recogniser on a dataset's pairs: the LFW protocol, and the files anyone can recompute it from.

    result = verify("lbph", "data/lfw", "pairs.txt", out_dir="results/lbph")

Each distinct image of the pairs is embedded once; a pair's score is minus the recogniser's own
distance (higher = more alike). With `out_dir` it writes

    verification.json          accuracy mean/std over the folds, AUC, EER, TAR at FAR 1e-1/1e-2/1e-3,
                               per-fold accuracies and thresholds, recogniser, dataset and pairs hashes
    pairs.csv                  fold,left,right,same,score per pair, in pairs.txt order
    roc.png                    the ROC on a log FAR axis
    verification_examples.png  true/false accepts and rejects, at each pair's fold threshold

Pairs come from `facegan.data.pairs` (LFW's pairs.txt format, `facegan data pairs`).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from facegan.config import load_json_optional
from facegan.data.dataset import FaceDataset, absolute_path
from facegan.data.pairs import read_pairs_txt, resolve_pairs
from facegan.errors import FaceganError
from facegan.files import check_writable_folder, read_regular_file, write_bytes_atomic
from facegan.faces.recognisers import Recogniser
from facegan.recognition.protocol import check_folds, evaluate_protocol, roc_figure_png
from facegan.run import VERIFICATION_NAMES, Run, is_export_folder

__all__ = ["VERIFICATION_FORMAT", "check_verification_out", "image_labels", "load_pairs", "load_verification", "verify"]

VERIFICATION_FORMAT = "facegan-verification"
_FORMAT_VERSION = 1
_EMBED_CHUNK = 1024  # images per embed call: bounded memory, and a progress tick per chunk
_DISTANCE_CHUNK = 1024  # pairs per distance call (LBPH descriptors are 16384 wide)
_MAX_PAIRS_BYTES = 256 << 20
CATEGORIES = (
    ("true_accept", "true accepts (same person, accepted)"),
    ("false_accept", "false accepts (different people, accepted)"),
    ("false_reject", "false rejects (same person, rejected)"),
    ("true_reject", "true rejects (different people, rejected)"),
)


# ---- pairs -----------------------------------------------------------------------------------------
def _file_hash(path: Path) -> str:
    return hashlib.sha256(read_regular_file(path, _MAX_PAIRS_BYTES)).hexdigest()


def load_pairs(dataset: FaceDataset, pairs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(left, right, same, fold, description) from a pairs.txt path, parsed pairs, or four index arrays."""
    if isinstance(pairs, (str, os.PathLike)):
        path = Path(pairs)
        if not path.exists():
            raise FaceganError(f"pairs file not found: {path} (write one with `facegan data pairs DATASET --out {path}`)")
        if path.is_dir():
            raise FaceganError(f"pairs file {path} is a folder; give the pairs.txt file")
        description = {"path": str(absolute_path(path)), "sha256": _file_hash(path)}
        left, right, same, fold = resolve_pairs(dataset, read_pairs_txt(path))
    elif isinstance(pairs, tuple) and len(pairs) == 4 and all(isinstance(part, np.ndarray) for part in pairs):
        left, right, same, fold = pairs
        description = {"path": None}
    else:
        left, right, same, fold = resolve_pairs(dataset, pairs)
        description = {"path": None}
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    same, fold = np.asarray(same, dtype=bool), np.asarray(fold, dtype=np.int64)
    if len(left) == 0:
        raise FaceganError("the pairs file holds no pairs")
    out_of_range = (left < 0) | (left >= len(dataset)) | (right < 0) | (right >= len(dataset))
    if out_of_range.any():
        raise FaceganError(f"{int(out_of_range.sum())} pairs name images outside the dataset's {len(dataset)}; the pairs belong to another dataset")
    if description.get("sha256") is None:
        arrays = np.stack([left, right, same.astype(np.int64), fold])
        description["sha256"] = hashlib.sha256(arrays.tobytes()).hexdigest()
    return left, right, same, fold, description


def image_labels(dataset: FaceDataset, rows: np.ndarray) -> list[str]:
    """How pairs.csv names an image: its source path, else identity/number (1-based among that identity's images), else #row."""
    paths = dataset.source_paths
    if len(paths) == len(dataset):
        return [paths[row] for row in rows]
    if dataset.has_identities and dataset.identity_names:
        identity = np.asarray(dataset.identity)
        names = dataset.identity_names
        number = np.zeros(len(identity), dtype=np.int64)
        seen: dict[int, int] = {}
        for row, person in enumerate(identity):
            seen[int(person)] = seen.get(int(person), 0) + 1
            number[row] = seen[int(person)]
        return [f"{names[identity[row]]}/{number[row]}" if 0 <= identity[row] < len(names) else f"#{row}" for row in rows]
    return [f"#{row}" for row in rows]


# ---- the results folder ------------------------------------------------------------------------------
def check_verification_out(out_dir: str | os.PathLike, dataset_path: Path | None = None, recogniser_name: str | None = None) -> Path:
    """Refuse, before any work, a results folder that is a file, lies in the dataset, is an export, is another recogniser's
    run (when `recogniser_name` is known), or holds result-named files facegan did not write."""
    if not isinstance(out_dir, (str, os.PathLike)) or not os.fspath(out_dir):
        raise FaceganError(f"the verification output must be a folder path, got {out_dir!r}")
    folder = absolute_path(out_dir)
    if folder.exists() and not folder.is_dir():
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(os.stat(folder).st_mode) else "a file" if folder.is_file() else "not a folder"
        raise FaceganError(f"output {out_dir} is {kind}, not a folder; give a folder for the verification results")
    if dataset_path is not None:
        real, data = Path(os.path.realpath(folder)), Path(os.path.realpath(dataset_path))
        if real == data or data in real.parents:
            where = "is the dataset folder itself" if real == data else f"lies inside the dataset {dataset_path}"
            raise FaceganError(f"output {out_dir} {where}; results there would spoil the dataset, choose another folder")
    if is_export_folder(folder):
        raise FaceganError(f"output {out_dir} is an export folder (the shipped config and weights); give its run folder or another folder")
    _check_not_another_recognisers_run(folder, out_dir, recogniser_name)
    if folder.is_dir():
        ours = is_verification_file(folder / VERIFICATION_NAMES[0])
        for name in VERIFICATION_NAMES:
            path = folder / name
            if os.path.lexists(path):
                if path.is_symlink() or not path.is_file():
                    raise FaceganError(f"output {out_dir} holds {name} that is not a regular file; move it or choose another folder")
                if not ours:
                    raise FaceganError(
                        f"output {out_dir} holds a {name} that `facegan recog eval` did not write (no facegan verification.json beside it); "
                        "move it or choose another folder (it would be replaced)"
                    )
    check_writable_folder(folder, "the verification results")
    return folder


def _check_not_another_recognisers_run(folder: Path, out_dir: str | os.PathLike, recogniser_name: str | None) -> None:
    """A recogniser run's verification.json is that recogniser's: `facegan report RUN` shows it as the run's own result."""
    run = Run(folder)
    if recogniser_name is None or not run.is_run():
        return
    try:
        kind = run.read_config().get("kind")
    except FaceganError:
        return
    own = f"facegan:{os.path.realpath(run.export_dir)}"
    if kind == "recogniser" and not (recogniser_name.startswith("facegan:") and os.path.realpath(recogniser_name[8:]) == own[8:]):
        raise FaceganError(f"output {out_dir} is the run of another recogniser; {recogniser_name}'s results there would pass as that run's own, "
                           f"choose another folder (e.g. {Path(out_dir) / 'verify-other'})")


def is_verification_file(path: Path) -> bool:
    try:
        record = load_json_optional(path)
    except FaceganError:
        return False
    return isinstance(record, dict) and record.get("format") == VERIFICATION_FORMAT


def load_verification(folder: str | os.PathLike) -> dict[str, Any] | None:
    """FOLDER/verification.json written by `verify`, or None when there is none (or it is not facegan's)."""
    path = Run(folder).verification_path
    if not path.is_file():
        return None
    record = load_json_optional(path)
    return record if isinstance(record, dict) and record.get("format") == VERIFICATION_FORMAT else None


# ---- verification ------------------------------------------------------------------------------------
def _embed_rows(recogniser: Recogniser, images: np.ndarray, rows: np.ndarray, batch_size: int, progress: bool) -> np.ndarray:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(rows), desc=f"embedding ({recogniser.name})", unit="img", dynamic_ncols=True, leave=False)
    parts = []
    try:
        for start in range(0, len(rows), _EMBED_CHUNK):
            chunk = np.asarray(images[rows[start : start + _EMBED_CHUNK]])  # (B, H, W, C) uint8; sorted rows read an mmap in order
            descriptors = np.asarray(recogniser.embed(chunk, batch_size=batch_size))
            if descriptors.ndim != 2 or len(descriptors) != len(chunk):
                raise FaceganError(f"recogniser {recogniser.name} returned {descriptors.shape} descriptors for {len(chunk)} images")
            parts.append(descriptors)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return np.concatenate(parts)


def _examples(scores: np.ndarray, same: np.ndarray, thresholds: np.ndarray, count: int) -> dict[str, list[int]]:
    """Pair indices per outcome: the most confident errors, and the correct calls nearest the threshold (the informative ones)."""
    accepted = scores >= thresholds
    margin = np.abs(scores - thresholds)
    chosen = {}
    for key, mask, worst_first in (
        ("true_accept", same & accepted, False), ("false_accept", ~same & accepted, True),
        ("false_reject", same & ~accepted, True), ("true_reject", ~same & ~accepted, False),
    ):
        indices = np.flatnonzero(mask)
        order = np.argsort(-margin[indices] if worst_first else margin[indices], kind="stable")
        chosen[key] = [int(index) for index in indices[order[:count]]]
    return chosen


def _examples_png(dataset: FaceDataset, left: np.ndarray, right: np.ndarray, scores: np.ndarray, examples: dict[str, list[int]]) -> bytes | None:
    from facegan.plots import figure_png, plt

    rows = [(key, title) for key, title in CATEGORIES if examples.get(key)]
    if not rows:
        return None
    columns = max(len(examples[key]) for key, _ in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.9 * columns, 1.35 * len(rows)), squeeze=False)
    for row, (key, title) in enumerate(rows):
        for column in range(columns):
            axis = axes[row][column]
            axis.axis("off")
            if column >= len(examples[key]):
                continue
            pair = examples[key][column]
            image = np.concatenate([np.asarray(dataset.images[left[pair]]), np.asarray(dataset.images[right[pair]])], axis=1)
            axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            axis.set_title(f"score {scores[pair]:.3g}", fontsize=7)
        axes[row][0].text(-0.05, 0.5, title.split(" (")[0], transform=axes[row][0].transAxes, ha="right", va="center", fontsize=8)
    figure.subplots_adjust(left=0.18, right=0.99, top=0.9, bottom=0.02, hspace=0.45, wspace=0.08)
    return figure_png(figure)


def _pairs_csv(fold: np.ndarray, left: list[str], right: list[str], same: np.ndarray, scores: np.ndarray) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["fold", "left", "right", "same", "score"])
    for row in zip(fold.tolist(), left, right, same.astype(int).tolist(), scores.tolist()):
        writer.writerow([row[0], row[1], row[2], row[3], repr(float(row[4]))])  # repr: every digit, so anyone recomputes exactly
    return buffer.getvalue().encode()


def verify(
    recogniser: Recogniser | str,
    dataset: FaceDataset | str | os.PathLike,
    pairs: Any,
    out_dir: str | os.PathLike | None = None,
    *,
    batch_size: int = 64,
    progress: bool = False,
    num_examples: int = 4,
    device: str = "cpu",
) -> dict[str, Any]:
    """Run the LFW protocol for `recogniser` on `dataset`'s `pairs` (a pairs.txt path, parsed pairs, or
    (left, right, same, fold) arrays); returns the verification.json record and writes the files to `out_dir`."""
    if isinstance(recogniser, (str, os.PathLike)):
        from facegan.recognition.resolve import resolve_recogniser

        recogniser = resolve_recogniser(recogniser, device=device)
    if not isinstance(dataset, FaceDataset):
        dataset = FaceDataset.load(dataset)
    out = check_verification_out(out_dir, dataset.path, recogniser.name) if out_dir is not None else None  # before the slow part
    left, right, same, fold, pairs_description = load_pairs(dataset, pairs)
    check_folds(fold)  # before the slow embedding, and before its progress bar
    distinct, inverse = np.unique(np.concatenate([left, right]), return_inverse=True)
    descriptors = _embed_rows(recogniser, dataset.images, distinct, batch_size, progress)  # each distinct image once
    broken = np.flatnonzero(~np.isfinite(descriptors).all(axis=1))
    if broken.size:
        raise FaceganError(
            f"recogniser {recogniser.name} gave non-finite (NaN/inf) descriptors for {broken.size} of {len(distinct)} images "
            f"(first: dataset row {int(distinct[broken[0]])}); check the recogniser's weights and input images"
        )
    num_pairs = len(left)
    scores = np.empty(num_pairs, dtype=np.float64)
    for start in range(0, num_pairs, _DISTANCE_CHUNK):
        stop = min(start + _DISTANCE_CHUNK, num_pairs)
        first, second = descriptors[inverse[start:stop]], descriptors[inverse[num_pairs + start : num_pairs + stop]]
        scores[start:stop] = -np.asarray(recogniser.distance(first, second), dtype=np.float64)  # higher = more alike
    protocol = evaluate_protocol(scores, same, fold)
    thresholds_by_fold = dict(zip(protocol.folds, protocol.fold_thresholds))
    pair_thresholds = np.array([thresholds_by_fold[int(value)] for value in fold])
    examples = _examples(scores, same, pair_thresholds, num_examples)
    left_labels, right_labels = image_labels(dataset, left), image_labels(dataset, right)
    record: dict[str, Any] = {
        "format": VERIFICATION_FORMAT,
        "format_version": _FORMAT_VERSION,
        **protocol.to_dict(),
        "recogniser": recogniser.name,
        "recogniser_version": recogniser.version,
        "recogniser_dim": int(getattr(recogniser, "dim", descriptors.shape[1])),
        "score": f"minus the recogniser's {recogniser.match.metric} distance (higher = more alike)",
        "dataset": str(dataset.path) if dataset.path is not None else None,
        "dataset_hash": dataset.content_hash,
        "pairs_file": pairs_description["path"],
        "pairs_hash": pairs_description["sha256"],
        "num_images_embedded": int(len(distinct)),
        "examples": {
            key: [{"pair": index + 1, "left": left_labels[index], "right": right_labels[index], "same": bool(same[index]),
                   "score": float(scores[index]), "threshold": float(pair_thresholds[index])} for index in indices]
            for key, indices in examples.items()
        },
        "files": {},
    }
    if out is not None:
        results = Run(out)
        # Two evals into one folder: without the lock their four files could interleave (one's pairs.csv, the other's json).
        with results.lock():
            write_bytes_atomic(results.verification_pairs_path, _pairs_csv(fold, left_labels, right_labels, same, scores))
            label = f"{recogniser.name} (AUC {protocol.auc:.3f})"
            write_bytes_atomic(results.verification_roc_path, roc_figure_png([(label, protocol.far, protocol.tar)], f"Verification ROC: {recogniser.name}"))
            record["files"] = {"pairs": results.verification_pairs_path.name, "roc": results.verification_roc_path.name}
            examples_png = _examples_png(dataset, left, right, scores, examples)
            if examples_png is not None:
                write_bytes_atomic(results.verification_examples_path, examples_png)
                record["files"]["examples"] = results.verification_examples_path.name
            write_bytes_atomic(results.verification_path, (json.dumps(record, indent=2) + "\n").encode())  # last: it vouches for the others
    return record
