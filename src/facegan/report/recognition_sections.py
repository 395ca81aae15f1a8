"""The face-verification section of the report card: `facegan recog eval` results found in a run/results folder.

Registered on import by `facegan.report.card`. It reads FOLDER/verification.json and those of the
folder's direct sub-folders (e.g. results/dlib, results/lbph), so one card compares every recogniser
evaluated there: a table, their ROC curves on one plot (recomputed from each pairs.csv), and each one's
example pairs. The report sits above recognition: it reads recognition's results, never the reverse.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from facegan.errors import FaceganError
from facegan.files import read_regular_file
from facegan.recognition.protocol import roc_figure_png, roc_points
from facegan.recognition.verification import load_verification
from facegan.report.sections import Figure, ReportSection, Table, register_section
from facegan.run import Run

MAX_RESULTS = 24  # a folder with hundreds of sub-folders should not make the card crawl
MAX_CSV_BYTES = 256 * 2**20
MAX_PNG_BYTES = 64 * 2**20


def find_verifications(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(results folder, verification record) for FOLDER and each direct sub-folder holding facegan's verification.json."""
    found = []
    candidates = [folder]
    try:
        candidates += sorted(entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    except OSError:
        pass
    for candidate in candidates:
        record = load_verification(candidate)
        if record is not None and _usable(record):
            found.append((candidate, record))
        if len(found) >= MAX_RESULTS:
            break
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _usable(record: dict[str, Any]) -> bool:
    """Whether a verification.json holds the fields the card shows (a hand-edited one is left out, not the whole section)."""
    tar = record.get("tar_at_far")
    return (all(_is_number(record.get(key)) for key in ("accuracy_mean", "accuracy_std", "auc", "eer", "num_pairs", "num_different"))
            and isinstance(record.get("recogniser"), str) and isinstance(record.get("folds"), list)
            and isinstance(tar, dict) and all(_is_number(value) for value in tar.values()))


def _label(folder: Path, run: Path, record: dict[str, Any]) -> str:
    where = "" if folder == run else f" ({folder.name})"
    return f"{record['recogniser']}{where}"


def _roc_from_csv(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(FAR, TAR) recomputed from a pairs.csv; None when it is missing or not one `recog eval` wrote."""
    try:
        # read_regular_file: a FIFO named pairs.csv would block open() for ever, a device never ends.
        text = read_regular_file(path, MAX_CSV_BYTES).decode("utf-8", errors="replace")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        scores = np.array([float(row["score"]) for row in rows])
        same = np.array([row["same"] == "1" for row in rows])
        far, tar, _ = roc_points(scores, same)
    except (OSError, KeyError, ValueError, TypeError, csv.Error, FaceganError):  # a broken CSV costs its curve only
        return None
    return far, tar


def _table(run: Path, results: list[tuple[Path, dict[str, Any]]]) -> Table:
    rows = []
    for folder, record in results:
        tar = record["tar_at_far"]
        rows.append([
            _label(folder, run, record),
            Path(str(record.get("dataset") or "?")).name + f" ({str(record.get('dataset_hash', '?'))[:8]})",
            f"{record['num_pairs']} / {len(record['folds'])}",
            f"{record['accuracy_mean']:.2%} ± {record['accuracy_std']:.2%}",
            f"{record['auc']:.4f}",
            f"{record['eer']:.2%}",
            *[f"{tar[key]:.2%}" if key in tar else "-" for key in ("0.1", "0.01", "0.001")],
        ])
    return Table(
        "Verification (LFW protocol)",
        ["recogniser", "dataset", "pairs / folds", "accuracy", "ROC AUC", "EER", "TAR @ FAR 0.1", "TAR @ FAR 0.01", "TAR @ FAR 0.001"],
        rows,
        "Accuracy: mean ± std over the folds, each tested at the threshold best on the other folds (higher is better). "
        "AUC, EER and TAR over all pairs: higher AUC and TAR, lower EER are better. TAR at a FAR below 1/(different pairs) "
        "is read at FAR 0 and says little.",
    )


@register_section("recogniser", order=15)
def recogniser_section(run: Path) -> ReportSection | None:
    """A `facegan recog train` run: data, backbone, head, length, calibrated threshold and the training curves."""
    from facegan.config import load_json_optional

    folder = Run(run)
    config = load_json_optional(folder.config_path)
    if not isinstance(config, dict) or config.get("kind") != "recogniser":
        return None
    summary = folder.read_summary() or {}
    export = load_json_optional(folder.export_dir / "config.json") if folder.has_export() else None
    backbone, head = config.get("backbone", {}), config.get("head", {})
    rows = [
        ["data", ", ".join(str(path) for path in config.get("data", []))
         + (f" (share of the second: {config['mix']})" if config.get("mix") is not None else "")],
        ["backbone", f"width {backbone.get('width')}, blocks {backbone.get('blocks')}, embedding {backbone.get('embedding_size')}"],
        ["head", f"{head.get('kind')} (s {head.get('scale')}, m {head.get('margin') if head.get('margin') is not None else 'default'})"],
        ["trained", f"{summary.get('num_steps', '?')} steps of batch {config.get('batch_size')}, {summary.get('seconds', '?')} s, "
                    f"{summary.get('img_per_s', '?')} img/s"],
    ]
    readings = [f"A face recogniser trained on {len(config.get('data', []))} identity-labelled dataset(s)."]
    match = (export or {}).get("match") or {}
    if match:
        calibration = match.get("calibration") or {}
        rows.append(["match rule", f"{match.get('metric')} distance below {match.get('threshold', float('nan')):.4f}"])
        if calibration:
            readings.append(f"Its threshold was calibrated on {calibration.get('num_same')} same and {calibration.get('num_different')} "
                            f"different pairs of {calibration.get('pairs')} (accuracy there {calibration.get('accuracy', 0):.1%}); "
                            "`facegan recog eval` measures it on pairs it never saw.")
    adversarial = (export or {}).get("adversarial_training")
    if isinstance(adversarial, dict):
        rows.append(["adversarial training", str(adversarial.get("description", adversarial.get("method")))])
        readings.append(f"Trained adversarially ({adversarial.get('description')}): each batch was replaced by its PGD perturbation "
                        "before the update; `facegan attack` measures what that bought and what it cost in clean accuracy.")
    if summary.get("interrupted"):
        readings.append("The run was interrupted; resume it with `facegan recog train --out RUN --resume`.")
    figures = []
    try:
        curves = read_regular_file(folder.loss_curves_path, MAX_PNG_BYTES)
    except (OSError, FaceganError):
        curves = b""
    if curves:
        figures.append(Figure("Training curves", curves, "Margin-softmax loss and training accuracy per logged step; the loss should fall."))
    return ReportSection("Recogniser", readings, figures=figures, tables=[Table("Configuration", ["setting", "value"], rows)])


@register_section("verification", order=70)
def verification_section(run: Path) -> ReportSection | None:
    """Face verification results (`facegan recog eval --out FOLDER`), when FOLDER or a sub-folder holds verification.json."""
    results = find_verifications(Path(run))
    if not results:
        return None
    readings = []
    best_folder, best = max(results, key=lambda item: item[1]["accuracy_mean"])
    readings.append(
        f"Best verification accuracy: {_label(best_folder, Path(run), best)} at {best['accuracy_mean']:.2%} ± {best['accuracy_std']:.2%} "
        f"on {best['num_pairs']} pairs (chance is 50%)."
    )
    small = [record for _, record in results if record["num_different"] < 1000]
    if small:
        readings.append("With fewer than 1000 different-person pairs, TAR at FAR 0.001 is read at FAR 0: a single false accept changes it.")
    curves, figures = [], []
    for folder, record in results:
        roc = _roc_from_csv(Run(folder).verification_pairs_path)
        if roc is not None:
            curves.append((f"{_label(folder, Path(run), record)} (AUC {record['auc']:.3f})", *roc))
    if curves:
        figures.append(Figure("ROC", roc_figure_png(curves, "Verification ROC"),
                              "True accepts against false accepts over all pairs, log scale; curves further up and left are better."))
    for folder, record in results:
        try:
            examples = read_regular_file(Run(folder).verification_examples_path, MAX_PNG_BYTES)
        except (OSError, FaceganError):
            continue
        if examples:
            figures.append(Figure(
                f"Example pairs: {_label(folder, Path(run), record)}", examples,
                "Rows: true accepts and true rejects nearest the threshold, false accepts and false rejects most confidently wrong; "
                "each at its fold's threshold (score = minus the recogniser's distance).",
            ))
    return ReportSection("Face verification", readings, figures=figures, tables=[_table(Path(run), results)])
