"""The report-card section of a repair run (`facegan repair train`): its config, training curves, and the
per-band / per-degradation evaluation with the example strip when `facegan repair eval` has written them.

Registered on import by `facegan.report.card`. GAN-only sections skip repair runs (`card.is_non_gan_run`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facegan.config import load_json_optional
from facegan.errors import FaceganError
from facegan.files import read_regular_file
from facegan.repair.evaluate import MIN_LOSS_SHOWN
from facegan.report.sections import Figure, ReportSection, Table, register_section
from facegan.run import Run

MAX_PNG_BYTES = 64 * 2**20
REPAIR_EVAL_FORMAT = "facegan-repair-eval"  # what `facegan repair eval` writes (repair.export.evaluate_repairer)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if _number(value):
        return f"{value:.4g}"
    return str(value)


def _rows_table(title: str, rows: list[dict[str, Any]], keys: list[str], caption: str) -> Table | None:
    """A table of the eval's row records (each a flat mapping); rows that are not mappings are left out."""
    rows = [row for row in rows if isinstance(row, dict)]
    if not rows:
        return None
    columns = [key for key in keys if any(key in row for row in rows)]
    return Table(title, columns, [[_cell(row.get(key)) for key in columns] for row in rows], caption)


def _read_png(path: Path) -> bytes:
    try:
        return read_regular_file(path, MAX_PNG_BYTES)
    except (OSError, FaceganError):
        return b""


def _inpainting_rows(inpainting: dict[str, Any]) -> list[dict[str, Any]]:
    """evaluate_inpainting's bands x methods as flat rows (band, method, metrics)."""
    rows = []
    for band in inpainting.get("bands") or []:
        if not isinstance(band, dict) or not isinstance(band.get("methods"), dict):
            continue
        for name, entry in band["methods"].items():
            if isinstance(entry, dict):
                rows.append({"band": band.get("label"), "method": name, **{key: value for key, value in entry.items() if key != "masks_sha256"}})
    return rows


def _restoration_rows(restoration: dict[str, Any]) -> list[dict[str, Any]]:
    """evaluate_restoration's conditions as rows: damage, accuracy degraded and per method (share of the loss recovered)."""
    rows = []
    clean = (restoration.get("clean") or {}).get("accuracy_mean")
    for condition in restoration.get("conditions") or []:
        if not isinstance(condition, dict):
            continue
        degraded = (condition.get("degraded") or {}).get("accuracy_mean")
        row = {"damage": condition.get("damage"), "clean": clean, "degraded": degraded}
        recovered = condition.get("recovered") or {}
        # As repair.evaluate's table: a share of a loss of a pair or two is noise, so it is shown only past 2 points.
        lost = clean - degraded if _number(clean) and _number(degraded) else 0.0
        for name, accuracy in (condition.get("methods") or {}).items():
            value = (accuracy or {}).get("accuracy_mean") if isinstance(accuracy, dict) else None
            share = recovered.get(name) if lost >= MIN_LOSS_SHOWN else None
            row[name] = f"{value:.1%}" + (f" ({share:+.0%})" if _number(share) else "") if _number(value) else "-"
        rows.append(row)
    return rows


def _inpainting_readings(rows: list[dict[str, Any]]) -> list[str]:
    """Per band: does the network beat the best OpenCV method on face distance (the issue's target)?"""
    readings = []
    bands = list(dict.fromkeys(row["band"] for row in rows if isinstance(row.get("band"), str)))
    wins, ratios = 0, []
    for band in bands:
        here = [row for row in rows if row.get("band") == band and _number(row.get("face_distance"))]
        net = [row for row in here if row.get("method") == "net"]
        opencv = [row for row in here if row.get("method") in ("telea", "ns")]
        if net and opencv:
            best = min(row["face_distance"] for row in opencv)
            ratios.append(f"{band}: {net[0]['face_distance'] / best:.3g}" if best > 0 else f"{band}: -")
            wins += net[0]["face_distance"] < best
    if ratios:
        readings.append(f"Face-space distance to the original, repaired / best OpenCV (below 1 = the network keeps identity better): "
                        f"{'; '.join(ratios)}; the network wins {wins} of {len(ratios)} bands.")
    return readings


@register_section("repair", order=15)
def repair_section(run: Path) -> ReportSection | None:
    """A `facegan repair train` run: data, network, losses, damage, length, curves, and its evaluation when there is one."""
    folder = Run(run)
    config = load_json_optional(folder.config_path)
    if not isinstance(config, dict) or config.get("kind") != "repair":
        return None
    summary = folder.read_summary() or {}
    environment = folder.read_run_info() or {}
    model, loss, damage = config.get("model", {}), config.get("loss", {}), config.get("damage", {})
    rows = [
        ["data", f"{config.get('data')} (hash {str(environment.get('dataset_hash', '?'))[:12]}, {environment.get('dataset_images', '?')} images, "
                 f"{environment.get('resolution', '?')} px)"],
        ["network", f"gated-convolution encoder-decoder, width {model.get('width')}; SN-PatchGAN critic width {model.get('discriminator_width')}"],
        ["losses", f"L1 {loss.get('l1')} + damaged-pixel L1 {loss.get('damaged_l1')} + hinge adversarial {loss.get('adversarial')} "
                   f"+ dlib identity {loss.get('identity')} (every {loss.get('identity_every')} steps)"],
        ["holes", f"{', '.join(damage.get('mask_kinds', []))}; {damage.get('min_hole_ratio')}-{damage.get('max_hole_ratio')} of the pixels"],
        ["degradations", f"{', '.join(damage.get('degradations', []))} on {damage.get('degradation_probability')} of the images"],
        ["trained", f"{summary.get('num_steps', '?')} of {config.get('steps')} steps of batch {config.get('batch_size')}, "
                    f"{summary.get('seconds', '?')} s, {summary.get('img_per_s', '?')} img/s"],
    ]
    readings = [f"A face-repair network trained to fill holes and undo noise, blur and JPEG damage on {environment.get('dataset_images', '?')} faces."]
    last = summary.get("last_stats") or {}
    if _number(last.get("damaged_l1")):
        readings.append(f"Last logged L1 on the damaged pixels: {last['damaged_l1']:.4f} (on the [-1, 1] scale; lower is better).")
    if summary.get("interrupted"):
        readings.append("The run was interrupted; resume it with `facegan repair train --out RUN --resume`.")
    figures, tables = [], [Table("Configuration", ["setting", "value"], rows)]
    curves = _read_png(folder.loss_curves_path)
    if curves:
        figures.append(Figure("Training curve", curves, "L1 between the network's fill and the clean face on the damaged pixels; it should fall."))

    evaluation = load_json_optional(folder.repair_eval_path)
    if isinstance(evaluation, dict) and evaluation.get("format") == REPAIR_EVAL_FORMAT:
        inpainting = _inpainting_rows(evaluation.get("inpainting") or {})
        readings.append(f"Evaluated by `facegan repair eval` on {evaluation.get('num_images', '?')} held-out faces of {evaluation.get('data')}; "
                        "every method saw the very same masks and degraded images.")
        readings += _inpainting_readings(inpainting)
        readings += [f"Note: {note}" for note in evaluation.get("notes") or [] if isinstance(note, str)]
        table = _rows_table("Inpainting per mask-ratio band", inpainting,
                            ["band", "method", "psnr", "ssim", "l1", "face_distance", "face_match_rate", "fd"],
                            "PSNR (dB) and SSIM higher is better; L1, face-space distance to the original and FD of repaired vs "
                            "original faces lower is better; matched = share still recognised as the same person. Masks of every kind "
                            "(box, strokes, eyes, mouth), the same for each method; 'masked' is the unrepaired input.")
        if table is not None:
            tables.append(table)
        table = _rows_table("Restoration per degradation", evaluation.get("restoration_quality") or [],
                            ["degradation", "method", "psnr", "ssim", "l1"],
                            "The degraded images themselves, the network's restoration and the OpenCV baselines, against the clean faces.")
        if table is not None:
            tables.append(table)
        restoration = evaluation.get("restoration")
        if isinstance(restoration, dict):
            rows = _restoration_rows(restoration)
            keys = list(dict.fromkeys(key for row in rows for key in row))
            table = _rows_table(f"Verification accuracy under damage ({restoration.get('num_pairs', '?')} pairs)", rows, keys,
                                "Accuracy of the recogniser on the same pairs, clean, damaged, and after each repair; in brackets the "
                                "share of the lost accuracy won back (the target: at least +50%).")
            if table is not None:
                tables.append(table)
        strip = _read_png(folder.repair_strip_path)
        if strip:
            figures.append(Figure("Repair examples", strip, "Rows: original, damaged (holes white), OpenCV Telea, OpenCV Navier-Stokes, "
                                                            "the network; the same faces and masks in every row."))
    elif folder.repair_eval_path.exists():
        readings.append(f"{folder.repair_eval_path} is not a readable `facegan repair eval` result; run it again to rewrite it.")
    else:
        readings.append("Measure it per mask band against OpenCV with `facegan repair eval RUN --data HOLDOUT`.")
    return ReportSection("Face repair", readings, figures=figures, tables=tables)
