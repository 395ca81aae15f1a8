"""Measure repair methods on the same damage: per-band inpainting quality, and verification after restoration.

    from facegan.repair.baselines import INPAINTERS, RESTORERS
    result = evaluate_inpainting(INPAINTERS, holdout_images)          # per band x method
    print(format_inpainting_table(result))
    result = evaluate_restoration(RESTORERS, dataset, pairs)          # accuracy clean / degraded / restored

Inpainting, per hole-ratio band (BANDS, the irregular-mask protocol): every method gets the very
same masks (one read-only array per band; its hash is recorded and checked after each method) and
the same damaged images (holes filled with HOLE_FILL, so no method can read what was hidden); every
output must return the known pixels exactly. Measured against the originals: PSNR, SSIM, L1
(facegan.metrics.quality), the face-space distance of each repaired face to its original (the
recogniser's own distance; dlib: Euclidean, same person below 0.6) and the share still matched, and
the FD between the repaired and the original faces in facegan.metrics' "face" feature space (dlib
descriptors; with a few hundred faces FD is biased upwards, so compare methods on one image set only).
Image i of a band gets the mask kind kinds[i % len(kinds)], drawn from np.random.default_rng([seed, band, i]).

Restoration: verification accuracy (LFW protocol, facegan.recognition.protocol) on the same pairs,
clean, damaged (both images of a pair), and after each method; `recovered` is the share of the lost
accuracy a method wins back: (restored - damaged) / (clean - damaged).
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from facegan.errors import FaceganError
from facegan.metrics.quality import image_quality
from facegan.repair.degrade import DEGRADATIONS, default_severity, degrade
from facegan.repair.masks import ALIGNED_ANCHORS, BANDS, MASK_KINDS, FaceAnchors, check_kind, check_ratio, hole_ratio, make_mask

EVAL_FORMAT = "facegan-repair-eval"
RESTORE_FORMAT = "facegan-restore-eval"
HOLE_FILL = 0  # what a hole holds when a method sees it (black); methods must not depend on it
MASKED = "masked"  # the no-repair reference row: holes left as HOLE_FILL

Inpainter = Callable[[np.ndarray, np.ndarray], np.ndarray]
Restorer = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[str], None]


def band_label(band: Sequence[float]) -> str:
    return f"{round(100 * band[0])}-{round(100 * band[1])}%"


def masks_hash(masks: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(masks, dtype=bool).tobytes()).hexdigest()[:16]


def band_masks(count: int, size: int, band: Sequence[float], band_index: int, kinds: Sequence[str] = MASK_KINDS,
               seed: int = 0, anchors: FaceAnchors = ALIGNED_ANCHORS) -> np.ndarray:
    """The evaluation masks of one band: image i gets kind kinds[i % len(kinds)], its ratio inside the band."""
    band = check_ratio(tuple(band), size)
    masks = np.zeros((count, size, size), dtype=bool)
    for index in range(count):
        masks[index] = make_mask(size, kinds[index % len(kinds)], band, np.random.default_rng([seed, band_index, index]), anchors)
    return masks


def hide(images: np.ndarray, masks: np.ndarray, fill: int = HOLE_FILL) -> np.ndarray:
    """The damaged input a method sees: the hole pixels replaced by `fill`."""
    damaged = np.array(images, copy=True)
    damaged[masks] = fill
    return damaged


def _read_only(array: np.ndarray) -> np.ndarray:
    view = np.array(array, copy=True)
    view.setflags(write=False)
    return view


def _check_originals(images: Any, what: str = "the faces to repair") -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] not in (1, 3):
        raise FaceganError(f"{what} must be uint8 square images (N, S, S, 1 or 3); got {images.dtype} {images.shape}")
    if len(images) < 2:
        raise FaceganError(f"{what} are {len(images)} image(s); the evaluation needs at least 2 (FD needs a spread)")
    return images


def _check_output(name: str, output: Any, like: np.ndarray) -> np.ndarray:
    output = np.asarray(output)
    if output.dtype != np.uint8 or output.shape != like.shape:
        raise FaceganError(f"repair method {name!r} returned {output.dtype} {output.shape}; it must return uint8 {like.shape} like its input")
    return output


def _resolve(recogniser: Any, device: str) -> Any:
    if isinstance(recogniser, (str, os.PathLike)):
        from facegan.recognition.resolve import resolve_recogniser

        return resolve_recogniser(recogniser, device=device)
    return recogniser


def _recogniser_record(recogniser: Any) -> dict[str, Any]:
    return {"name": recogniser.name, "version": recogniser.version, "threshold": float(recogniser.threshold), "metric": recogniser.match.metric}


class _FaceFeatures:
    """The "face" feature space for FD: the recogniser's own descriptors when it is dlib's (no second pass), else the extractor."""

    def __init__(self, recogniser: Any, device: str) -> None:
        from facegan.metrics.features import FACE_FEATURES_NAME, get_extractor

        self.name = FACE_FEATURES_NAME
        self.shared = recogniser.name == "dlib-resnet"
        self.extractor = None if self.shared else get_extractor("face", device=device)

    def features(self, images: np.ndarray, embeddings: np.ndarray, batch_size: int) -> np.ndarray:
        return embeddings if self.shared else self.extractor.features(images, batch_size=batch_size)


def _face_scores(recogniser: Any, originals_embedded: np.ndarray, repaired: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    embedded = recogniser.embed(repaired, batch_size=batch_size)
    return recogniser.distance(originals_embedded, embedded), embedded


def evaluate_inpainting(
    methods: Mapping[str, Inpainter],
    originals: np.ndarray,
    kinds: Sequence[str] = MASK_KINDS,
    bands: Sequence[Sequence[float]] = BANDS,
    seed: int = 0,
    recogniser: Any = "dlib",
    fd: bool = True,
    anchors: FaceAnchors = ALIGNED_ANCHORS,
    include_masked: bool = True,
    batch_size: int = 64,
    device: str = "cpu",
    progress: Progress | None = None,
    keep_images: int = 0,
) -> dict[str, Any]:
    """Per band x method: psnr, ssim, l1, face_distance, face_match_rate, fd (see the module docstring).

    methods: name -> f(damaged uint8 NHWC, masks bool NHW) -> repaired uint8 NHWC (known pixels exact).
    keep_images: also return the first `keep_images` originals, damaged and repaired faces of each band
    under result["images"] (numpy, not JSON) for strips.
    """
    from facegan.metrics.frechet import frechet_distance_from_features

    originals = _check_originals(originals)
    if not methods:
        raise FaceganError("no repair methods to evaluate; give at least one (e.g. facegan.repair.baselines.INPAINTERS)")
    if MASKED in methods and include_masked:
        raise FaceganError(f"{MASKED!r} names the no-repair reference row; call the method something else")
    kinds = tuple(check_kind(kind) for kind in kinds)
    if not kinds:
        raise FaceganError("no mask kinds to evaluate; give at least one of " + ", ".join(MASK_KINDS))
    size = originals.shape[1]
    bands = [check_ratio(tuple(band), size) for band in bands]
    recogniser = _resolve(recogniser, device)
    say = progress or (lambda message: None)
    originals_embedded = recogniser.embed(originals, batch_size=batch_size)
    face_space = _FaceFeatures(recogniser, device) if fd else None
    original_features = face_space.features(originals, originals_embedded, batch_size) if face_space else None
    names = ([MASKED] if include_masked else []) + list(methods)
    result: dict[str, Any] = {
        "format": EVAL_FORMAT,
        "num_images": len(originals),
        "resolution": size,
        "channels": int(originals.shape[3]),
        "kinds": list(kinds),
        "seed": int(seed),
        "anchors": {"eye_y": anchors.eye_y, "lower_face_y": anchors.lower_face_y, "center_x": anchors.center_x},
        "recogniser": _recogniser_record(recogniser),
        "fd_features": face_space.name if face_space else None,
        "hole_fill": HOLE_FILL,
        "methods": names,
        "bands": [],
    }
    kept: dict[str, dict[str, np.ndarray]] = {}
    for band_index, band in enumerate(bands):
        masks = _read_only(band_masks(len(originals), size, band, band_index, kinds, seed, anchors))
        mask_id = masks_hash(masks)
        damaged = _read_only(hide(originals, masks))
        record: dict[str, Any] = {"band": list(band), "label": band_label(band), "masks_sha256": mask_id,
                                  "hole_ratio_mean": float(hole_ratio(masks).mean()), "methods": {}}
        if keep_images:
            kept[band_label(band)] = {"original": originals[:keep_images], "masks": np.asarray(masks[:keep_images]),
                                      MASKED: np.asarray(damaged[:keep_images])}
        for name in names:
            say(f"band {band_label(band)}: {name}")
            if name == MASKED:
                repaired = np.asarray(damaged)
            else:
                repaired = _check_output(name, methods[name](damaged, masks), originals)
                # The comparison must not silently differ between methods: same masks, same inputs, compositing.
                if masks_hash(masks) != mask_id:
                    raise FaceganError(f"repair method {name!r} changed the masks it was given; methods must not write to their inputs")
                if not np.array_equal(repaired[~masks], originals[~masks]):
                    changed = int((repaired != originals)[~masks].any(axis=-1).sum())
                    raise FaceganError(f"repair method {name!r} changed {changed} known pixels; composite its output (known pixels exactly as given)")
            scores = image_quality(originals, repaired)
            distances, embedded = _face_scores(recogniser, originals_embedded, repaired, batch_size)
            entry = {
                "masks_sha256": mask_id,
                "psnr": float(np.mean(np.minimum(scores["psnr"], 100.0))),  # an exact copy (inf) counts as 100 dB
                "ssim": float(scores["ssim"].mean()),
                "l1": float(scores["l1"].mean()),
                "face_distance": float(distances.mean()),
                "face_match_rate": float(np.mean(distances < recogniser.threshold)),
            }
            if face_space is not None:
                entry["fd"] = frechet_distance_from_features(face_space.features(repaired, embedded, batch_size), original_features)
            record["methods"][name] = entry
            if keep_images and name != MASKED:
                kept[band_label(band)][name] = repaired[:keep_images]
        assert len({entry["masks_sha256"] for entry in record["methods"].values()}) == 1  # one mask set per band
        result["bands"].append(record)
    result["summary"] = {
        name: {metric: float(np.mean([band["methods"][name][metric] for band in result["bands"]]))
               for metric in result["bands"][0]["methods"][name] if metric != "masks_sha256"}
        for name in names
    }
    if keep_images:
        result["images"] = kept
    return result


INPAINT_COLUMNS = (("psnr", "PSNR", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"), ("l1", "L1", "{:.4f}"),
                   ("face_distance", "face dist", "{:.3f}"), ("face_match_rate", "matched", "{:.0%}"), ("fd", "FD", "{:.3f}"))


def format_inpainting_table(result: Mapping[str, Any]) -> str:
    """One plain-text table: a row per band x method."""
    columns = [column for column in INPAINT_COLUMNS if column[0] in result["bands"][0]["methods"][result["methods"][0]]]
    width = max(12, max(len(name) for name in result["methods"]) + 2)
    lines = [f"{'band':<9s}{'method':<{width}s}" + "".join(f"{title:>11s}" for _, title, _ in columns)]
    for band in result["bands"]:
        for name in result["methods"]:
            entry = band["methods"][name]
            lines.append(f"{band['label']:<9s}{name:<{width}s}" + "".join(f"{fmt.format(entry[key]):>11s}" for key, _, fmt in columns))
    return "\n".join(lines)


def distance_ratio(result: Mapping[str, Any], method: str, baselines: Sequence[str] = ("telea", "ns"), metric: str = "face_distance") -> list[float]:
    """Per band: `metric` of `method` over the best (lowest) of `baselines` (below 1 = the method is better)."""
    ratios = []
    for band in result["bands"]:
        best = min(band["methods"][name][metric] for name in baselines)
        ratios.append(band["methods"][method][metric] / best if best > 0 else float("inf"))
    return ratios


# ---- restoration for recognition -------------------------------------------------------------------
def _pairs_arrays(images: Any, pairs: Any, num_images: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(pairs, tuple) and len(pairs) == 4:
        left, right, same, fold = (np.asarray(part) for part in pairs)
    else:
        from facegan.data.dataset import FaceDataset
        from facegan.data.pairs import read_pairs_txt, resolve_pairs

        if not isinstance(images, FaceDataset):
            raise FaceganError("pairs from a pairs file need the FaceDataset they name; give the dataset, or pairs as (left, right, same, fold) arrays")
        parsed = read_pairs_txt(pairs) if isinstance(pairs, (str, os.PathLike)) else pairs
        left, right, same, fold = resolve_pairs(images, parsed)
    left, right = left.astype(np.int64), right.astype(np.int64)
    if not (len(left) == len(right) == len(same) == len(fold)) or len(left) == 0:
        raise FaceganError("pairs must be four arrays of one non-zero length: left, right, same, fold")
    if min(left.min(), right.min()) < 0 or max(left.max(), right.max()) >= num_images:
        raise FaceganError(f"pairs name images outside the {num_images} given; the pairs belong to other images")
    return left, right, same.astype(bool), fold.astype(np.int64)


def _accuracy(recogniser: Any, embedded: np.ndarray, left: np.ndarray, right: np.ndarray, same: np.ndarray, fold: np.ndarray) -> dict[str, Any]:
    from facegan.recognition.protocol import evaluate_protocol

    # A pair's score is minus the recogniser's own distance, as facegan.recognition.verification scores it.
    protocol = evaluate_protocol(-recogniser.distance(embedded[left], embedded[right]), same, fold)
    return {"accuracy_mean": protocol.accuracy_mean, "accuracy_std": protocol.accuracy_std, "auc": protocol.auc,
            "tar_at_far": dict(protocol.tar_at_far)}


def evaluate_restoration(
    methods: Mapping[str, Restorer],
    images: Any,
    pairs: Any,
    degradations: Sequence[str] = DEGRADATIONS,
    recogniser: Any = "dlib",
    seed: int = 0,
    severities: Mapping[str, float] | None = None,
    inpainters: Mapping[str, Inpainter] | None = None,
    occlusions: Sequence[str] = (),
    occlusion_ratio: float | tuple[float, float] = (0.2, 0.3),
    anchors: FaceAnchors = ALIGNED_ANCHORS,
    batch_size: int = 64,
    device: str = "cpu",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Verification accuracy on the same pairs: clean, damaged, and after each method (see the module docstring).

    images: a FaceDataset or uint8 NHWC; pairs: (left, right, same, fold) index arrays, a pairs.txt path or a
    PairsFile (with a FaceDataset). methods restore each of `degradations`; `inpainters` (f(images, masks))
    repair each of `occlusions` (mask kinds, e.g. "eyes", "mouth", at `occlusion_ratio`). Both images of a
    pair are damaged; only the images the pairs use are embedded.
    """
    all_images = np.asarray(images.images if hasattr(images, "images") else images)
    left, right, same, fold = _pairs_arrays(images, pairs, len(all_images))
    rows = np.unique(np.concatenate([left, right]))
    position = np.full(len(all_images), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    left, right = position[left], position[right]
    clean = _check_originals(np.ascontiguousarray(all_images[rows]), "the pair images")
    from facegan.recognition.protocol import check_folds

    check_folds(fold)
    for kind in degradations:
        from facegan.repair.degrade import check_kind as check_degradation

        check_degradation(kind)
    occlusions = tuple(check_kind(kind) for kind in occlusions)
    if occlusions and not inpainters:
        raise FaceganError("occlusions need inpainting methods (inpainters=...) to repair them")
    occlusion_ratio = check_ratio(occlusion_ratio, clean.shape[1])
    recogniser = _resolve(recogniser, device)
    say = progress or (lambda message: None)
    say("clean")
    result: dict[str, Any] = {
        "format": RESTORE_FORMAT,
        "num_pairs": int(len(same)),
        "num_images": int(len(rows)),
        "resolution": int(clean.shape[1]),
        "seed": int(seed),
        "recogniser": _recogniser_record(recogniser),
        "clean": _accuracy(recogniser, recogniser.embed(clean, batch_size=batch_size), left, right, same, fold),
        "conditions": [],
    }
    clean_accuracy = result["clean"]["accuracy_mean"]

    def measure(label: str, damaged: np.ndarray, repairs: Mapping[str, Callable[[], np.ndarray]], settings: dict[str, Any]) -> None:
        say(f"{label}: damaged")
        condition = {"damage": label, **settings, "degraded": _accuracy(recogniser, recogniser.embed(damaged, batch_size=batch_size), left, right, same, fold), "methods": {}, "recovered": {}}
        lost = clean_accuracy - condition["degraded"]["accuracy_mean"]
        for name, repair in repairs.items():
            say(f"{label}: {name}")
            restored = _check_output(name, repair(), clean)
            accuracy = _accuracy(recogniser, recogniser.embed(restored, batch_size=batch_size), left, right, same, fold)
            condition["methods"][name] = accuracy
            # Share of the lost accuracy won back; undefined (None) when the damage cost nothing.
            condition["recovered"][name] = (accuracy["accuracy_mean"] - condition["degraded"]["accuracy_mean"]) / lost if lost > 0 else None
        result["conditions"].append(condition)

    for kind in degradations:
        severity = (severities or {}).get(kind)
        damaged = _read_only(degrade(clean, kind, seed=seed, severity=severity))
        used = default_severity(kind, clean.shape[1]) if severity is None else float(severity)
        measure(kind, damaged, {name: (lambda method=method: method(damaged)) for name, method in methods.items()}, {"severity": used})
    for kind in occlusions:
        masks = _read_only(np.stack([make_mask(clean.shape[1], kind, occlusion_ratio, np.random.default_rng([seed, 1000 + MASK_KINDS.index(kind), index]), anchors)
                                     for index in range(len(clean))]))
        damaged = _read_only(hide(clean, masks))
        repairs = {name: (lambda method=method: method(damaged, masks)) for name, method in (inpainters or {}).items()}
        measure(f"{kind} occlusion", damaged, repairs, {"ratio": list(occlusion_ratio) if isinstance(occlusion_ratio, tuple) else occlusion_ratio,
                                                        "masks_sha256": masks_hash(masks)})
    return result


MIN_LOSS_SHOWN = 0.02


def format_restoration_table(result: Mapping[str, Any]) -> str:
    """One plain-text table: per damage, accuracy degraded and after each method, and the share of the loss recovered (when >= 2 points were lost)."""
    names = sorted({name for condition in result["conditions"] for name in condition["methods"]})
    lines = [f"clean accuracy {100 * result['clean']['accuracy_mean']:.1f} % ({result['num_pairs']} pairs, {result['recogniser']['name']})",
             f"{'damage':<18s}{'degraded':>10s}" + "".join(f"{name:>16s}" for name in names)]
    for condition in result["conditions"]:
        cells = []
        for name in names:
            if name not in condition["methods"]:
                cells.append(f"{'-':>16s}")
                continue
            recovered = condition["recovered"][name]
            # A share of a loss of a pair or two is noise (-300 %); shown only when the damage cost >= MIN_LOSS_SHOWN.
            lost = result["clean"]["accuracy_mean"] - condition["degraded"]["accuracy_mean"]
            share = "" if recovered is None or lost < MIN_LOSS_SHOWN else f" ({recovered:+.0%})"
            cells.append(f"{100 * condition['methods'][name]['accuracy_mean']:.1f}{share}".rjust(16))
        lines.append(f"{condition['damage']:<18s}{100 * condition['degraded']['accuracy_mean']:>10.1f}" + "".join(cells))
    return "\n".join(lines)


# ---- figure ---------------------------------------------------------------------------------------------
def repair_strip(rows: Mapping[str, np.ndarray], cell: int = 64, padding: int = 2) -> bytes:
    """PNG bytes: one labelled row of faces per entry (e.g. original, masked, telea, net), nearest-upscaled to `cell` px."""
    from PIL import Image, ImageDraw, ImageFont

    from facegan.images import convert_channels, png_bytes
    from facegan.provenance.record import COMPOSITE, Provenance

    if not rows:
        raise FaceganError("a repair strip needs at least one row of images")
    arrays = {name: np.asarray(images) for name, images in rows.items()}
    counts = {len(images) for images in arrays.values()}
    shapes = {images.shape[1:3] for images in arrays.values()}
    if len(counts) != 1 or len(shapes) != 1 or 0 in counts:
        raise FaceganError(f"every row of a repair strip needs the same number and size of images; got {[images.shape for images in arrays.values()]}")
    count = counts.pop()
    size = shapes.pop()[0]
    factor = max(1, -(-cell // size))
    side = size * factor
    font = ImageFont.load_default()
    label_width = 8 + max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(name, font=font)) for name in arrays)
    canvas = np.full((len(arrays) * (side + padding) + padding, label_width + count * (side + padding) + padding, 3), 255, np.uint8)
    for row, images in enumerate(arrays.values()):
        top = padding + row * (side + padding)
        for column, image in enumerate(images):
            left = label_width + padding + column * (side + padding)
            rgb = convert_channels(image if image.ndim == 3 else image[:, :, None], 3)
            canvas[top : top + side, left : left + side] = np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    for row, name in enumerate(arrays):
        draw.text((4, padding + row * (side + padding) + side // 2 - 6), name, fill=(0, 0, 0), font=font)
    return png_bytes(np.asarray(picture), Provenance(source_type=COMPOSITE, action="repair"))


# ---- flat rows (for JSON files and report tables) ---------------------------------------------------------
def inpainting_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One flat record per band x method: band (label), method, psnr, ssim, l1, face_distance, face_match_rate[, fd]."""
    return [{"band": band["label"], "method": name, **{key: value for key, value in entry.items() if key != "masks_sha256"}}
            for band in result["bands"] for name, entry in band["methods"].items()]


def restoration_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One flat record per damage x (degraded | method): degradation, method, accuracy, accuracy_std, auc, recovered."""
    rows = [{"degradation": "none", "method": "clean", "accuracy": result["clean"]["accuracy_mean"],
             "accuracy_std": result["clean"]["accuracy_std"], "auc": result["clean"]["auc"], "recovered": None}]
    for condition in result["conditions"]:
        for name, accuracy in [("degraded", condition["degraded"]), *condition["methods"].items()]:
            rows.append({"degradation": condition["damage"], "method": name, "accuracy": accuracy["accuracy_mean"],
                         "accuracy_std": accuracy["accuracy_std"], "auc": accuracy["auc"],
                         "recovered": None if name == "degraded" else condition["recovered"][name]})
    return rows
