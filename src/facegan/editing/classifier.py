"""A small multi-label attribute classifier trained on a dataset's attribute labels (CelebA's 40, rendered-faces' 13).

InterFaceGAN needs a labeller for generated images: this CNN learns P(attribute present | image) from a
labelled FaceDataset, and reports its accuracy per attribute on images of people it never saw (the
split is by identity when the dataset has identities, so a memorised person cannot inflate the figure).
Saved as `classifier.json` + `model.safetensors`; loading never unpickles anything.
"""
from __future__ import annotations

import hashlib
import json
import numbers
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facegan.errors import FaceganError

CLASSIFIER_FORMAT = "facegan-attribute-classifier"
CLASSIFIER_VERSION = 1
CLASSIFIER_CONFIG_NAME = "classifier.json"
CLASSIFIER_WEIGHTS_NAME = "model.safetensors"
# Named in the cache key: a change to AttributeNet's layers must change this, so no stale classifier is reused.
NET_LAYOUT = "conv3-strided4x4-flatten-linear"
# Below this many images per side a held-out accuracy means nothing; refuse rather than report noise.
MIN_IMAGES = 10


@dataclass(frozen=True)
class ClassifierSettings:
    """How the classifier is trained; part of its cache key, so changing one retrains."""

    steps: int = 600  # optimiser steps (600 x 64 images: ~40 epochs of a 1000-image set, ~20 s on 2 CPU cores)
    batch_size: int = 64
    lr: float = 2e-3  # Adam
    width: int = 32  # channels of the first conv; doubled at each downsampling (capped at 4x)
    holdout: float = 0.2  # fraction of identities (or images) held out to measure accuracy
    seed: int = 0

    def validate(self) -> "ClassifierSettings":
        for name, low, high in (("steps", 1, 1_000_000), ("batch_size", 1, 4096), ("width", 4, 256), ("seed", 0, 2**63 - 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
                raise FaceganError(f"classifier {name} must be a whole number from {low} to {high}, got {value!r:.40}")
        for name, low, high in (("lr", 1e-7, 1.0), ("holdout", 0.01, 0.9)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= float(value) <= high:
                raise FaceganError(f"classifier {name} must be a number from {low:g} to {high:g}, got {value!r:.40}")
        return self


class AttributeNet(nn.Module):
    """(N, C, R, R) in [-1, 1] -> (N, A) logits: strided convs down to 4x4, then one linear layer.

    The last feature map is flattened, not pooled: on aligned faces *where* a feature is (glasses at eye
    height, an open mouth) is most of what tells the attributes apart.
    """

    def __init__(self, resolution: int, channels: int, num_attributes: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
        current, size = width, resolution
        while size > 4:
            following = min(current * 2, width * 4)
            layers += [nn.Conv2d(current, following, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            current, size = following, size // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(current * size * size, num_attributes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))  # (N, A)


def _prepare_pixels(images: torch.Tensor, resolution: int, channels: int) -> torch.Tensor:
    """Float NCHW in [-1, 1] of any square size / 1 or 3 channels -> the classifier's input size and channels."""
    if images.shape[1] != channels:
        if channels == 3:
            images = images.expand(-1, 3, -1, -1)
        else:  # RGB -> grey with ITU-R 601 luma, as datasets are prepared
            images = (images * images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if images.shape[-1] != resolution or images.shape[-2] != resolution:
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
    return images


class AttributeClassifier:
    """A trained classifier: uint8 NHWC images (any square size) -> per-attribute probabilities (N, A)."""

    def __init__(self, net: AttributeNet, info: dict[str, Any], device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.net = net.eval().requires_grad_(False).to(self.device)
        self.info = info

    @property
    def attribute_names(self) -> list[str]:
        return list(self.info["attribute_names"])

    @property
    def resolution(self) -> int:
        return int(self.info["resolution"])

    @property
    def channels(self) -> int:
        return int(self.info["channels"])

    @property
    def accuracy(self) -> dict[str, float]:
        """Held-out accuracy per attribute."""
        return {name: row["accuracy"] for name, row in self.info["holdout"].items()}

    @property
    def key(self) -> str:
        """Content key (settings + dataset hash + weights): directions found with this classifier are cached under it."""
        return str(self.info["key"])

    def index(self, attribute: str) -> int:
        """Column of `attribute`; an unknown name is one line listing the ones this classifier knows."""
        names = self.attribute_names
        if attribute not in names:
            raise FaceganError(f"unknown attribute '{attribute}': the labelled dataset has {', '.join(names)}")
        return names.index(attribute)

    def logits_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """Float NCHW in [-1, 1] -> (N, A) logits (differentiable)."""
        return self.net(_prepare_pixels(images.to(self.device), self.resolution, self.channels))

    def logits(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """uint8 (N, H, W, C) -> float32 (N, A) logits."""
        from facegan.images import to_model

        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
            raise FaceganError(f"the attribute classifier expects uint8 (N, H, W, C) images with 1 or 3 channels, got {images.dtype} {images.shape}")
        outputs = [np.zeros((0, len(self.attribute_names)), np.float32)]
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                outputs.append(self.logits_tensor(to_model(images[start : start + batch_size])).float().cpu().numpy())
        return np.concatenate(outputs)

    def scores(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """uint8 (N, H, W, C) -> float32 (N, A) probabilities that each attribute is present."""
        return (1.0 / (1.0 + np.exp(-self.logits(images, batch_size).astype(np.float64)))).astype(np.float32)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `classifier.json` + `model.safetensors` atomically."""
        from safetensors.torch import save

        from facegan.config import save_json
        from facegan.files import write_bytes_atomic

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().cpu().contiguous() for key, value in self.net.state_dict().items()}
        write_bytes_atomic(folder / CLASSIFIER_WEIGHTS_NAME, save(state, metadata={"format": CLASSIFIER_FORMAT}))
        save_json(self.info, folder / CLASSIFIER_CONFIG_NAME)
        return folder


def dataset_attributes(dataset: Any, what: str = "the dataset") -> tuple[np.ndarray, list[str]]:
    """(bool (N, A) labels, names) of a FaceDataset; one line when it has none."""
    names = list(getattr(dataset, "attribute_names", []) or [])
    labels = getattr(dataset, "attributes", None)
    if labels is None or not names:
        raise FaceganError(f"{what} has no attribute labels; pass --data with a labelled dataset, e.g. "
                           "`facegan data prepare builtin:rendered-faces data/rf32 --size 32` or a CelebA folder")
    return np.asarray(labels) > 0, names


def settings_key(settings: ClassifierSettings, dataset_hash: str, names: list[str]) -> str:
    """What a cached classifier was trained from: the same key means the same classifier."""
    payload = json.dumps({"settings": asdict(settings), "dataset": dataset_hash, "attributes": names, "version": CLASSIFIER_VERSION,
                          "net": NET_LAYOUT}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def train_classifier(dataset: Any, settings: ClassifierSettings | None = None, device: str | torch.device = "cpu",
                     progress: Callable[[int, int], None] | None = None) -> AttributeClassifier:
    """Train on a labelled FaceDataset; held-out accuracy per attribute is in `.info["holdout"]`.

    Deterministic by `settings.seed` on one device. Attributes every training image agrees on are kept
    (the net learns the constant) but flagged `constant` in the info: no direction can be found for them.
    """
    settings = (settings or ClassifierSettings()).validate()
    labels, names = dataset_attributes(dataset)
    if len(dataset) < 2 * MIN_IMAGES:
        raise FaceganError(f"the labelled dataset has {len(dataset)} images; the attribute classifier needs at least {2 * MIN_IMAGES}")
    by_identity = bool(getattr(dataset, "has_identities", False)) and len(np.unique(dataset.identity[dataset.identity >= 0])) >= 5
    train, holdout = dataset.split(settings.holdout, by_identity=by_identity, seed=settings.seed)
    if len(train) < MIN_IMAGES or len(holdout) < MIN_IMAGES:
        raise FaceganError(f"the labelled dataset splits into {len(train)} training and {len(holdout)} held-out images; "
                           f"at least {MIN_IMAGES} each are needed (use a larger dataset)")
    train_labels, holdout_labels = np.asarray(train.attributes) > 0, np.asarray(holdout.attributes) > 0
    device = torch.device(device)
    train_images = torch.from_numpy(np.ascontiguousarray(train.images))  # uint8 NHWC, converted per batch
    targets = torch.from_numpy(train_labels.astype(np.float32))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        net = AttributeNet(dataset.resolution, dataset.channels, len(names), settings.width).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.lr)
    # Rare attributes would be learnt as "never"; weighting positives by neg/pos (capped) keeps them visible.
    positives = targets.mean(0).clamp(1e-3, 1 - 1e-3)
    pos_weight = ((1 - positives) / positives).clamp(max=20.0).to(device)
    rng = np.random.default_rng([settings.seed, 1])
    net.train()
    for step in range(settings.steps):
        batch = torch.from_numpy(rng.integers(0, len(train_images), size=min(settings.batch_size, len(train_images))))
        x = (train_images[batch].to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0)
        flip = torch.from_numpy(rng.random(len(batch)) < 0.5).to(device).view(-1, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)  # mirrored faces keep every attribute these datasets label
        loss = F.binary_cross_entropy_with_logits(net(x), targets[batch].to(device), pos_weight=pos_weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if progress is not None and ((step + 1) % 50 == 0 or step + 1 == settings.steps):
            progress(step + 1, settings.steps)
    from safetensors.torch import save

    weights_hash = hashlib.sha256(save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()})).hexdigest()[:16]
    info: dict[str, Any] = {
        "format": CLASSIFIER_FORMAT, "format_version": CLASSIFIER_VERSION,
        "attribute_names": names, "resolution": dataset.resolution, "channels": dataset.channels, "width": settings.width,
        "settings": asdict(settings), "dataset_hash": dataset.content_hash,
        "dataset": str(dataset.path) if getattr(dataset, "path", None) else None,
        "split": {"by_identity": by_identity, "num_train": len(train), "num_holdout": len(holdout)},
        "key": f"{settings_key(settings, dataset.content_hash, names)}-{weights_hash}",
    }
    classifier = AttributeClassifier(net, info, device)
    predicted = classifier.scores(holdout.images) > 0.5
    info["holdout"] = _accuracy_rows(predicted, holdout_labels, train_labels, names)
    return classifier


def _accuracy_rows(predicted: np.ndarray, truth: np.ndarray, train_truth: np.ndarray, names: list[str]) -> dict[str, dict[str, Any]]:
    """Per attribute: accuracy, balanced accuracy, and the majority-class accuracy it must beat."""
    rows = {}
    for column, name in enumerate(names):
        guess, actual = predicted[:, column], truth[:, column]
        recalls = [float((guess[actual == side] == side).mean()) for side in (True, False) if (actual == side).any()]
        rows[name] = {
            "accuracy": round(float((guess == actual).mean()), 6),
            "balanced_accuracy": round(float(np.mean(recalls)), 6),
            "majority_accuracy": round(float(max(actual.mean(), 1 - actual.mean())), 6),
            "positive_rate": round(float(actual.mean()), 6),
            "constant": bool(train_truth[:, column].all() or not train_truth[:, column].any()),
        }
    return rows


def load_classifier(folder: str | os.PathLike, device: str | torch.device = "cpu") -> AttributeClassifier:
    """Load what `AttributeClassifier.save` wrote; anything else is one FaceganError line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from facegan.config import load_json_object

    folder = Path(folder)
    info = load_json_object(folder / CLASSIFIER_CONFIG_NAME, "attribute classifier config")
    if info.get("format") != CLASSIFIER_FORMAT:
        raise FaceganError(f"{folder / CLASSIFIER_CONFIG_NAME} is not a facegan attribute classifier (format {info.get('format')!r:.40})")
    if info.get("format_version") != CLASSIFIER_VERSION:
        raise FaceganError(f"{folder} holds attribute classifier format {info.get('format_version')!r:.20}; this facegan reads "
                           f"{CLASSIFIER_VERSION}: delete the folder and it is retrained")
    try:
        names = [str(name) for name in info["attribute_names"]]
        net = AttributeNet(int(info["resolution"]), int(info["channels"]), len(names), int(info["width"]))
        state = load_file(str(folder / CLASSIFIER_WEIGHTS_NAME))
        net.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError, OSError) as error:
        raise FaceganError(f"the attribute classifier in {folder} is corrupt ({str(error).splitlines()[0][:100]}); "
                           "delete the folder and it is retrained") from None
    return AttributeClassifier(net, info, device)


def cached_classifier(cache_dir: str | os.PathLike, dataset: Any, settings: ClassifierSettings | None = None,
                      device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None) -> AttributeClassifier:
    """The classifier for (dataset content, settings) from `cache_dir`, training and saving it on first use."""
    settings = (settings or ClassifierSettings()).validate()
    _, names = dataset_attributes(dataset)
    folder = Path(cache_dir) / f"classifier-{settings_key(settings, dataset.content_hash, names)}"
    if (folder / CLASSIFIER_CONFIG_NAME).is_file():
        try:
            return load_classifier(folder, device)
        except FaceganError:
            pass  # a damaged cache entry is retrained and replaced, never trusted
    classifier = train_classifier(dataset, settings, device, progress)
    classifier.save(folder)
    return classifier


__all__ = [
    "AttributeClassifier", "AttributeNet", "ClassifierSettings", "cached_classifier", "dataset_attributes",
    "load_classifier", "train_classifier",
]
