"""Repair-model export: `config.json` (kind "repair") + `model.safetensors`, and the loaded `Repairer`.

    repairer = load_repairer("runs/repair32")          # a run folder, its export/ or the weights file
    filled = repairer.repair(images, masks)            # inpaint: known pixels returned exactly
    restored = repairer.repair(noisy_images)           # no masks: restore noise / blur / JPEG damage

Loading never unpickles anything; generator and recogniser exports are refused in one line.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from facegan.errors import FaceganError
from facegan.files import check_format_version
from facegan.repair.config import REPAIR_KIND
from facegan.run import EXPORT_CONFIG_NAME, EXPORT_WEIGHTS_NAME, Run, is_export_folder

if TYPE_CHECKING:
    from facegan.repair.config import RepairConfig
    from facegan.repair.model import RepairNet

EXPORT_FORMAT = "facegan-repairer"
REPAIR_EVAL_FORMAT = "facegan-repair-eval"  # repair.evaluate's EVAL_FORMAT: RUN/repair_eval.json (report.repair_sections reads it)
REPAIR_EVAL_VERSION = 1
STRIP_BAND = 2  # the 30-40% band: holes big enough to tell methods apart
STRIP_IMAGES = 8
EXPORT_VERSION = 1
OTHER_FORMATS = {"facegan-generator": "a generator (facegan train)", "facegan-recogniser": "a face recogniser (facegan recog train)"}


def save_repair_export(folder: str | os.PathLike, net: "RepairNet", config: "RepairConfig", dataset_hash: str, num_steps: int) -> Path:
    """Write the completion network (no critic, no optimizer) and what it was trained on, atomically."""
    from safetensors.torch import save

    from facegan.config import save_json, to_dict
    from facegan.files import write_bytes_atomic
    from facegan.version import __version__

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in net.state_dict().items()}
    write_bytes_atomic(folder / EXPORT_WEIGHTS_NAME, save(state, metadata={"format": EXPORT_FORMAT}))
    save_json({
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "kind": REPAIR_KIND,
        "facegan_version": __version__,
        "model": {"resolution": net.resolution, "channels": net.channels, "width": net.width},
        "dataset": {"path": config.data, "hash": dataset_hash},
        "damage": to_dict(config.damage),
        "num_steps": num_steps,
    }, folder / EXPORT_CONFIG_NAME)
    return folder


class Repairer:
    """A trained repair network: uint8 face chips (+ masks) -> repaired uint8 chips of the same shape."""

    def __init__(self, net: "RepairNet", export_dir: Path, version: str, metadata: dict[str, Any], device: str | torch.device = "cpu") -> None:
        try:
            self.device = torch.device(device)
            self.net = net.eval().requires_grad_(False).to(self.device)
        except (RuntimeError, TypeError, ValueError, AssertionError) as error:
            raise FaceganError(f"cannot use device {device!r:.40} ({str(error).splitlines()[0]}); pass --device cpu") from None
        self.export_dir = export_dir
        self.name = f"facegan-repair:{export_dir}"
        self.version = version
        self.resolution = net.resolution
        self.channels = net.channels
        self.metadata = metadata

    def check_images(self, images: np.ndarray, what: str = "the images") -> np.ndarray:
        """uint8 (N, S, S, C) at the model's size and colour mode (grey (N, S, S) is taken too); refused in one line otherwise."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise FaceganError(f"{what} must be uint8, got {images.dtype}; convert with facegan.images.to_uint8")
        if images.ndim == 3 and self.channels == 1:
            images = images[..., None]
        if images.ndim != 4 or images.shape[1] != images.shape[2]:
            raise FaceganError(f"{what} must be square chips (N, S, S, C), got shape {images.shape}")
        size, channels = images.shape[1], images.shape[3]
        if size != self.resolution:
            # Resizing would change the known pixels, which a repair must return exactly.
            raise FaceganError(f"{what} are {size}x{size} but the repair model works on {self.resolution}x{self.resolution} chips; "
                               f"prepare them with --size {self.resolution}")
        if channels != self.channels:
            mode = {1: "grey", 3: "RGB"}
            raise FaceganError(f"{what} have {channels} channel(s) but the repair model was trained on {mode.get(self.channels, self.channels)} "
                               "chips; prepare them in the same colour mode")
        return images

    def check_masks(self, masks: np.ndarray, count: int) -> np.ndarray:
        """bool (N, S, S), True = missing; a (S, S) mask is used for every image. Wrong shapes and all-hole masks are refused."""
        masks = np.asarray(masks)
        if masks.dtype != bool:
            if not np.issubdtype(masks.dtype, np.number) or not np.isin(masks, (0, 1)).all():
                raise FaceganError(f"masks must be boolean (True = missing) or 0/1, got {masks.dtype} values")
            masks = masks.astype(bool)
        if masks.ndim == 2:
            masks = np.broadcast_to(masks, (count, *masks.shape))
        if masks.ndim != 3 or masks.shape[1:] != (self.resolution, self.resolution):
            raise FaceganError(f"masks have shape {masks.shape} but the images are {count} x {self.resolution}x{self.resolution}; "
                               f"give one {self.resolution}x{self.resolution} mask per image")
        if len(masks) != count:
            raise FaceganError(f"there are {len(masks)} masks for {count} images; give one mask per image (or one for all)")
        full = np.flatnonzero(masks.reshape(count, -1).all(axis=1))
        if len(full):
            raise FaceganError(f"mask {int(full[0])} hides every pixel: nothing is left to repair from; leave part of the face visible")
        return masks

    def repair(self, images: np.ndarray, masks: np.ndarray | None = None, batch_size: int = 64) -> np.ndarray:
        """Repaired uint8 chips, the shape of `images`.

        masks (bool (N, S, S) or one (S, S), True = missing): the holes are filled and every known pixel is
        returned exactly as given. masks=None: the whole image is restored (noise, blur, JPEG artefacts).
        """
        original_shape = np.shape(images)
        images = self.check_images(images)
        if masks is not None:
            masks = self.check_masks(masks, len(images))
        from facegan.images import to_model, to_uint8

        outputs = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size]
                x = to_model(np.array(chunk), self.device)  # (B, C, S, S); a writable copy (datasets are read-only memmaps)
                if masks is None:
                    mask = torch.zeros((len(chunk), 1, *chunk.shape[1:3]), device=self.device)
                else:
                    mask = torch.from_numpy(np.array(masks[start : start + batch_size])).to(self.device)[:, None].float()
                predicted = to_uint8(self.net.raw(x, mask)).numpy()
                if masks is not None:
                    # Compositing in uint8: known pixels are the input's bytes, whatever the network predicted there.
                    predicted = np.where(masks[start : start + batch_size, :, :, None], predicted, chunk)
                outputs.append(predicted)
        result = np.concatenate(outputs) if outputs else np.zeros_like(images)
        return result.reshape(original_shape)


def _export_folder(path: str | os.PathLike) -> Path:
    """A repair run folder, its export folder, or the weights file -> the export folder (one line when none)."""
    if not isinstance(path, (str, os.PathLike)):
        raise FaceganError(f"expected a path to a repair run or export, got {path!r:.60}")
    given = Path(path)
    if not given.exists():
        raise FaceganError(f"no such repair run or export: {given}")
    run = Run(given)
    if run.is_run() and not run.has_export():
        raise FaceganError(f"{given} holds a run but no export yet; train it until its first checkpoint "
                           f"(`facegan repair train --out {given} --resume`)")
    if given.is_dir() and not run.is_run() and not is_export_folder(given):
        raise FaceganError(f"{given} is not a repair model: no run of `facegan repair train` and no export "
                           f"({EXPORT_CONFIG_NAME} + {EXPORT_WEIGHTS_NAME}) there")
    return Run.locate(given).export_dir


def is_repair_export(path: str | os.PathLike) -> bool:
    """Whether `path` (a run folder, an export folder or its weights file) holds a repair export; never raises."""
    from facegan.config import load_json_object

    try:
        return load_json_object(_export_folder(path) / EXPORT_CONFIG_NAME, "export config").get("format") == EXPORT_FORMAT
    except (FaceganError, OSError, ValueError, TypeError):
        return False


def load_repairer(path: str | os.PathLike, device: str | torch.device = "cpu") -> Repairer:
    """Load a trained repair model from its run folder, export folder or model.safetensors."""
    from facegan.models.export import load_checked_weights

    from facegan.config import load_json_object
    from facegan.repair.model import RepairNet

    folder = _export_folder(path)
    config = load_json_object(folder / EXPORT_CONFIG_NAME, "export config")
    kind = config.get("format")
    if kind in OTHER_FORMATS:
        raise FaceganError(f"{path} is {OTHER_FORMATS[kind]}, not a repair model; pass a run of `facegan repair train`")
    if kind != EXPORT_FORMAT:
        raise FaceganError(f"{folder / EXPORT_CONFIG_NAME} is not a facegan repair export (format {kind!r:.40})")
    check_format_version(config, folder / EXPORT_CONFIG_NAME, folder, "repair", EXPORT_VERSION, "export the model again")
    try:
        model = config["model"]
        net = RepairNet(int(model["resolution"]), int(model["channels"]), int(model["width"]))
    except (KeyError, TypeError, ValueError) as error:
        raise FaceganError(f"{folder / EXPORT_CONFIG_NAME} describes no usable repair network ({type(error).__name__}: {error}); "
                           "export it again") from None
    version_hash = load_checked_weights(net, folder / EXPORT_WEIGHTS_NAME, "the repair model's", "export the model again")
    return Repairer(net, folder.resolve(), version_hash, json.loads(json.dumps(config)), device)


def fit_channels(images: np.ndarray, channels: int, what: str) -> np.ndarray:
    """Grey images for an RGB model are replicated (exactly reversible); RGB images for a grey model are refused."""
    if images.shape[3] == channels:
        return images
    if images.shape[3] == 1 and channels == 3:
        return np.repeat(images, 3, axis=3)
    raise FaceganError(f"the images are RGB but {what} works on grey chips; prepare them with `facegan data prepare ... --channels 1` (or give grey images)")


# ---- one entry point for every method (`facegan repair apply`, the web UI) ------------------------------
REPAIR_METHODS = ("net", "projection", "telea", "ns", "opencv-nlm", "unsharp")


def repair_images(method: str, images: np.ndarray, masks: np.ndarray | None = None, *, model: Any = None, seed: int = 0,
                  batch_size: int = 64, device: str = "cpu", projection_options: dict[str, Any] | None = None,
                  progress: Any = None) -> np.ndarray:
    """Repair uint8 (N, S, S, C) images with one method; known pixels are returned exactly as given.

    masks (bool (N, S, S), True = missing): inpaint; the holes are hidden (0) before the method sees them.
    masks=None: restore the whole image (net, projection, opencv-nlm, unsharp). model: a Repairer or a path
    for "net", a loaded generator or a path for "projection" (masked GAN inversion, facegan.inversion.project,
    composited into the holes; projection_options such as steps/starts go to it); none for the OpenCV baselines.
    """
    from facegan.repair.baselines import INPAINTERS, RESTORERS

    if method not in REPAIR_METHODS:
        raise FaceganError(f"unknown repair method {method!r}; choose one of {', '.join(REPAIR_METHODS)}")
    images = np.asarray(images)
    if masks is not None:
        masks = np.asarray(masks, dtype=bool)
        if masks.shape != images.shape[:3]:
            raise FaceganError(f"masks have shape {masks.shape} but the images are {images.shape[:3]}; give one mask per image")
    if method in INPAINTERS and masks is None:
        raise FaceganError(f"{method} fills holes: give masks (for noise/blur/JPEG use opencv-nlm or unsharp)")
    if method in RESTORERS and masks is not None:
        raise FaceganError(f"{method} restores noisy or blurred images and fills no holes; for masks use telea or ns")
    damaged = images if masks is None else np.where(masks[..., None], np.uint8(0), images)  # no method reads what is hidden
    if method == "net":
        repairer = model if isinstance(model, Repairer) else load_repairer(model, device=device)
        repaired = repairer.repair(damaged, masks, batch_size=batch_size)
    elif method == "projection":
        from facegan.inversion import project

        generator = model
        if isinstance(model, (str, os.PathLike)):
            from facegan.models.export import load_generator

            generator = load_generator(model, device=device)
        result = project(generator, damaged, masks=masks, seed=seed, batch_size=batch_size, progress=progress, **(projection_options or {}))
        repaired = np.asarray(result.images)
        if masks is not None:
            repaired = np.where(masks[..., None], repaired, images)
    elif method in INPAINTERS:
        repaired = INPAINTERS[method](damaged, masks)
    else:
        repaired = RESTORERS[method](damaged)
    if masks is not None and not np.array_equal(repaired[~masks], images[~masks]):
        raise FaceganError(f"method {method} changed known pixels; this is a facegan bug, please report it")
    return repaired


# ---- evaluation (`facegan repair eval`) -----------------------------------------------------------------
def evaluate_repairer(repairer: "Repairer", holdout: Any, *, pairs=None, seed: int = 0, recogniser: str = "dlib", fd: bool = True, limit: int | None = None,
                      batch_size: int = 64, device: str = "cpu", progress=None) -> tuple[dict, bytes]:
    """The repair_eval.json record and the strip PNG for a loaded repairer on a held-out FaceDataset (the Python API of `repair eval`).

    pairs: a pairs.txt path or PairsFile for the verification part; None makes pairs from the dataset's identities
    (or skips that part, with a note, when it has none). progress(message) hears each step.
    """
    from facegan.metrics.quality import image_quality
    from facegan.repair.baselines import INPAINTERS, RESTORERS
    from facegan.repair.degrade import DEGRADATIONS, degrade
    from facegan.repair.evaluate import MASKED, evaluate_inpainting, evaluate_restoration, repair_strip

    count = len(holdout) if limit is None else min(limit, len(holdout))
    originals = fit_channels(np.array(holdout.images[:count]), repairer.channels, "the repair model")
    repairer.check_images(originals, "the held-out faces")
    inpainters = {"net": lambda damaged, masks: repairer.repair(damaged, masks, batch_size=batch_size), **INPAINTERS}
    inpainting = evaluate_inpainting(inpainters, originals, seed=seed, recogniser=recogniser, fd=fd, batch_size=batch_size, device=device,
                                     progress=progress, keep_images=STRIP_IMAGES)
    kept = inpainting.pop("images")
    band = list(kept)[min(STRIP_BAND, len(kept) - 1)]
    shown = kept[band]
    masked = shown[MASKED].copy()
    masked[shown["masks"]] = 255  # holes white, as `repair apply` shows them
    strip = repair_strip({"original": shown["original"], f"masked {band}": masked, "telea": shown["telea"], "ns": shown["ns"],
                          "facegan": shown["net"]})

    restorers = {"net": lambda damaged: repairer.repair(damaged, batch_size=batch_size), **RESTORERS}
    quality_rows = []
    for kind in DEGRADATIONS:
        damaged = degrade(originals, kind, seed=seed)
        outputs = {"degraded": damaged, **{name: method(damaged) for name, method in restorers.items()}}
        for name, output in outputs.items():
            scores = image_quality(originals, output)
            quality_rows.append({"degradation": kind, "method": name, "psnr": float(np.mean(np.minimum(scores["psnr"], 100.0))),
                                 "ssim": float(scores["ssim"].mean()), "l1": float(scores["l1"].mean())})
    record = {"format": REPAIR_EVAL_FORMAT, "format_version": REPAIR_EVAL_VERSION, "model": str(repairer.export_dir),
              "model_version": repairer.version, "data": str(holdout.path), "data_hash": holdout.content_hash, "num_images": count,
              "seed": seed, "inpainting": inpainting, "restoration_quality": quality_rows, "restoration": None, "notes": []}
    trained_on = (repairer.metadata.get("dataset") or {}).get("hash")
    if trained_on == holdout.content_hash:
        record["notes"].append("the evaluation faces are the training faces: the figures overstate how well it generalises")
    if pairs is None and holdout.has_identities:
        from facegan.data.pairs import make_pairs

        faces = holdout.subset(np.arange(count)) if count < len(holdout) else holdout
        wanted = max(1, min(300, count // 4))
        for per_fold in dict.fromkeys((wanted, wanted // 2, wanted // 4, 1)):  # LFW's 300 per fold, or as many as the faces allow
            try:
                pairs = make_pairs(faces, folds=10, pairs_per_fold=max(1, per_fold), seed=seed)
                break
            except FaceganError as error:
                reason = str(error)
        else:
            record["notes"].append(f"no verification pairs could be made from {holdout.path} ({reason}); pass --pairs")
    elif pairs is None:
        record["notes"].append(f"{holdout.path} has no identity labels, so the verification accuracy under degradations was not measured; "
                               "pass --pairs PAIRS_TXT or a dataset with identities")
    if pairs is not None:
        # A pairs file names images of the whole dataset; made pairs index the faces evaluated above.
        whole = count == len(holdout) or isinstance(pairs, (str, os.PathLike))
        dataset = holdout if whole else holdout.subset(np.arange(count))
        occluders = {"net": inpainters["net"], **INPAINTERS}
        record["restoration"] = evaluate_restoration(restorers, dataset, pairs, recogniser=recogniser, seed=seed, inpainters=occluders,
                                                     occlusions=("eyes", "mouth"), batch_size=batch_size, device=device, progress=progress)
    return record, strip
