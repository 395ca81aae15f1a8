"""Recogniser export: `config.json` (kind "recogniser") + `model.safetensors`, and the loaded `Recogniser`.

A trained recogniser is used wherever a recogniser is named (`facegan recog eval RUN`, `recog embed`):
`load_recogniser_export(path)` returns an object that follows `facegan.faces.recognisers.Recogniser`,
with a cosine match rule whose threshold was calibrated on pairs of images held out of training.
Like generator exports, loading never unpickles anything. The two kinds refuse each other in one line.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from facegan.errors import FaceganError
from facegan.files import check_format_version
from facegan.faces.match import MatchRule
from facegan.faces.recognisers import MatchRuleRecogniser
from facegan.recognition.config import RECOGNISER_KIND
from facegan.run import EXPORT_CONFIG_NAME, EXPORT_WEIGHTS_NAME, Run, is_export_folder

if TYPE_CHECKING:
    from facegan.recognition.config import RecogConfig
    from facegan.recognition.training import IdentityData, RecogTrainer

EXPORT_FORMAT = "facegan-recogniser"
EXPORT_VERSION = 1
GENERATOR_FORMAT = "facegan-generator"  # models.export's; named here only to say "that is a generator"
MIN_THRESHOLD = 1e-6  # a MatchRule threshold is a positive distance


def calibrate_threshold(same_distances: np.ndarray, different_distances: np.ndarray) -> tuple[float, float]:
    """The distance threshold with the best accuracy on these pairs (the middle of the best interval), and that accuracy."""
    same, different = np.sort(np.asarray(same_distances, np.float64)), np.sort(np.asarray(different_distances, np.float64))
    candidates = np.unique(np.concatenate([same, different]))
    # Thresholds between consecutive distances, and beyond both ends; "same" means distance < threshold.
    cuts = np.concatenate([[candidates[0] - 1e-3], (candidates[:-1] + candidates[1:]) / 2, [candidates[-1] + 1e-3]])
    correct = np.searchsorted(same, cuts, side="left") + (len(different) - np.searchsorted(different, cuts, side="left"))
    best = np.flatnonzero(correct == correct.max())
    threshold = float(cuts[best[len(best) // 2]])
    return max(threshold, MIN_THRESHOLD), float(correct.max() / (len(same) + len(different)))


def save_recogniser_export(folder: str | os.PathLike, trainer: "RecogTrainer", config: "RecogConfig", data: "IdentityData") -> Path:
    """Write the embedding network (no head) and its calibrated match rule, atomically."""
    from safetensors.torch import save

    from facegan.config import save_json
    from facegan.files import write_bytes_atomic
    from facegan.version import __version__

    if len(data.calibration_images):
        anchors = trainer.embed(data.calibration_images)
        same = 1.0 - (anchors * trainer.embed(data.calibration_same)).sum(1)
        different = 1.0 - (anchors * trainer.embed(data.calibration_different)).sum(1)
        threshold, accuracy = calibrate_threshold(same, different)
        calibration = {"pairs": "held-out training images", "num_same": len(same), "num_different": len(different), "accuracy": round(accuracy, 6)}
    else:
        threshold, calibration = 0.5, {"pairs": "none (calibration_images=0): a default threshold"}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in trainer.net.state_dict().items()}
    write_bytes_atomic(folder / EXPORT_WEIGHTS_NAME, save(state, metadata={"format": EXPORT_FORMAT}))
    save_json({
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "kind": RECOGNISER_KIND,
        "facegan_version": __version__,
        "backbone": {"resolution": data.resolution, "channels": data.channels, "embedding_size": config.backbone.embedding_size,
                     "width": config.backbone.width, "blocks": list(config.backbone.blocks)},
        "match": {"metric": "cosine", "threshold": threshold, "calibration": calibration},
        "head": {"kind": config.head.kind, "scale": config.head.scale, "margin": trainer.head.margin},
        "adversarial_training": adversarial_training_metadata(config),
        "datasets": [{"path": path, "hash": digest} for path, digest in zip(config.data, data.hashes)],
        "num_classes": data.num_classes,
        "num_steps": trainer.num_steps,
        # Only with --init: where the weights started (plain exports keep their exact former layout).
        **({"init": trainer.init_record} if getattr(trainer, "init_record", None) is not None else {}),
    }, folder / EXPORT_CONFIG_NAME)
    return folder


def adversarial_training_metadata(config: "RecogConfig") -> dict[str, Any] | None:
    """The export's record of PGD adversarial training (None for a plain run): what a report card needs to name it."""
    adversarial = config.adversarial
    if not adversarial.enabled:
        return None
    step_size = adversarial.step_size if adversarial.step_size is not None else 2.5 * adversarial.eps / adversarial.steps
    record = {"method": "pgd-at", "norm": adversarial.norm, "eps": adversarial.eps, "steps": adversarial.steps,
              "step_size": step_size, "random_start": True, "scale": "0..255", "description": adversarial.describe()}
    if adversarial.loss == "trades":
        record.update(method="trades-cosine", beta=adversarial.beta)
    elif adversarial.loss == "trades-impersonation":
        record.update(method="trades-cosine-impersonation", beta=adversarial.beta, impersonation_weight=adversarial.impersonation_weight)
    elif adversarial.clean_weight:
        record["clean_weight"] = adversarial.clean_weight
    return record


class TrainedRecogniser(MatchRuleRecogniser):
    """A recogniser trained by `facegan recog train`: uint8 chips (any size) -> L2-normalised float32 (N, dim)."""

    def __init__(self, net: torch.nn.Module, export_dir: Path, version: str, match: MatchRule, metadata: dict[str, Any],
                 device: str | torch.device = "cpu") -> None:
        try:
            self.device = torch.device(device)
            self.net = net.eval().requires_grad_(False).to(self.device, memory_format=torch.channels_last)
        except (RuntimeError, TypeError, ValueError, AssertionError) as error:
            raise FaceganError(f"cannot use device {device!r:.40} ({str(error).splitlines()[0]}); pass --device cpu") from None
        self.name = f"facegan:{export_dir}"
        self.version = version
        self.dim = int(metadata["backbone"]["embedding_size"])
        self.resolution = int(metadata["backbone"]["resolution"])
        self.channels = int(metadata["backbone"]["channels"])
        self.match = match
        self.metadata = metadata

    def embed_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """Float (N, C, S, S) in [-1, 1] -> L2-normalised (N, dim); gradients flow back to the images (as dlib's port).

        The computation of `embed` on floats: channel conversion, resize to the model's side, the net. On images
        that are uint8 values mapped to [-1, 1] it matches `embed` to float rounding.
        """
        if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[2] != images.shape[3]:
            raise FaceganError(f"the face recogniser expects square (N, C, S, S) float chips with 1 or 3 channels, got {tuple(images.shape)}")
        x = images.to(self.device)
        if x.shape[1] != self.channels:
            x = x.expand(-1, 3, -1, -1) if self.channels == 3 else (
                x * torch.tensor([0.299, 0.587, 0.114], device=self.device, dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
        if x.shape[-1] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False, antialias=True)
        return F.normalize(self.net(x.contiguous(memory_format=torch.channels_last)).float())

    def embed(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 (N, H, W, C) (or (N, H, W) grey) square chips of any size -> L2-normalised float32 (N, dim)."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise FaceganError(f"the face recogniser expects uint8 images, got {images.dtype}; convert with facegan.images.to_uint8")
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[3] not in (1, 3) or images.shape[1] != images.shape[2]:
            raise FaceganError(f"the face recogniser expects square (N, S, S, C) chips with 1 or 3 channels, got shape {images.shape}")
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = torch.tensor(images[start : start + batch_size], device=self.device).permute(0, 3, 1, 2).float()
                if batch.shape[1] != self.channels:
                    # Grey -> RGB by replication; RGB -> grey with ITU-R 601 luma, as the datasets are prepared.
                    batch = batch.expand(-1, 3, -1, -1) if self.channels == 3 else (
                        batch * torch.tensor([0.299, 0.587, 0.114], device=self.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
                if batch.shape[-1] != self.resolution:
                    batch = F.interpolate(batch, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False, antialias=True)
                x = (batch / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)
                outputs.append(F.normalize(self.net(x).float()).cpu())
        if not outputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        return torch.cat(outputs).numpy()


def _export_folder(path: str | os.PathLike) -> Path:
    """A recogniser run folder, its export folder, or the weights file -> the export folder (one line when none)."""
    if not isinstance(path, (str, os.PathLike)):
        raise FaceganError(f"expected a path to a recogniser run or export, got {path!r:.60}")
    given = Path(path)
    run = Run(given)
    if run.is_run() and not run.has_export():
        raise FaceganError(f"{given} holds a run but no export yet; train it until its first checkpoint "
                           f"(`facegan recog train --out {given} --resume`)")
    if given.is_dir() and not run.is_run() and not is_export_folder(given):
        # Run.locate words this for generators; a dataset or a stray folder named as RECOGNISER needs the recogniser wording.
        raise FaceganError(f"{given} is not a recogniser: no run of `facegan recog train` and no export ({EXPORT_CONFIG_NAME} + {EXPORT_WEIGHTS_NAME}) there; "
                           "pass a recogniser run/export or a registered name (dlib, dlib-resnet, lbph, pixel)")
    return Run.locate(given).export_dir


def _read_export_config(folder: Path) -> dict[str, Any]:
    from facegan.config import load_json_object

    return load_json_object(folder / EXPORT_CONFIG_NAME, "export config")


def is_recogniser_export(path: str | os.PathLike) -> bool:
    """Whether `path` (a run folder, an export folder or its weights file) holds a recogniser export; never raises."""
    try:
        return _read_export_config(_export_folder(path)).get("format") == EXPORT_FORMAT
    except (FaceganError, OSError, ValueError, TypeError):
        return False


def load_recogniser_export(path: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedRecogniser:
    """Load a trained recogniser from its run folder, export folder or model.safetensors."""
    from facegan.models.export import load_checked_weights

    from facegan.recognition.backbone import EmbeddingNet

    folder = _export_folder(path)
    config = _read_export_config(folder)
    kind = config.get("format")
    if kind == GENERATOR_FORMAT:
        raise FaceganError(f"{path} is a generator (facegan train), not a face recogniser; pass a run of `facegan recog train` "
                           "or a registered recogniser name")
    if kind != EXPORT_FORMAT:
        raise FaceganError(f"{folder / EXPORT_CONFIG_NAME} is not a facegan recogniser export (format {kind!r:.40})")
    check_format_version(config, folder / EXPORT_CONFIG_NAME, folder, "recogniser", EXPORT_VERSION, "export the recogniser again")
    try:
        backbone = config["backbone"]
        net = EmbeddingNet(int(backbone["resolution"]), int(backbone["channels"]), int(backbone["embedding_size"]),
                           int(backbone["width"]), [int(count) for count in backbone["blocks"]])
        match = MatchRule("cosine", float(config["match"]["threshold"]))
    except (KeyError, TypeError, ValueError) as error:
        raise FaceganError(f"{folder / EXPORT_CONFIG_NAME} describes no usable recogniser ({type(error).__name__}: {error}); "
                           "export it again") from None
    # The version names the descriptor space: the same weights give the same descriptors.
    version_hash = load_checked_weights(net, folder / EXPORT_WEIGHTS_NAME, "the recogniser's", "export the recogniser again")
    return TrainedRecogniser(net, folder.resolve(), version_hash, match, json.loads(json.dumps(config)), device)
