"""Planted data for the editing tests: attributes that are known functions of pixels or of z."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from facegan.data.dataset import FaceDataset

NAMES = ["Top_Bright", "Left_Red", "Noise"]


def planted_images(top: np.ndarray, left: np.ndarray, size: int = 16, seed: int = 0) -> np.ndarray:
    """uint8 (N, size, size, 3): a bright top half where `top`, a red left half where `left`, plus mild noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(60, 100, size=(len(top), size, size, 3)).astype(np.int32)
    images[top, : size // 2] += 120
    images[left, :, : size // 2, 0] += 100
    return np.clip(images, 0, 255).astype(np.uint8)


def planted_dataset(count: int = 200, size: int = 16, seed: int = 0) -> FaceDataset:
    """Attributes Top_Bright and Left_Red are visible; Noise is a coin flip nothing in the image shows."""
    rng = np.random.default_rng(seed)
    top, left, noise = (rng.random(count) < 0.5 for _ in range(3))
    attributes = np.where(np.stack([top, left, noise], 1), 1, -1).astype(np.int8)
    identity = np.arange(count) // 4  # 4 images a "person", so the split is by identity as for real sets
    return FaceDataset(images=planted_images(top, left, size, seed), manifest={"attribute_names": list(NAMES)},
                       identity=identity.astype(np.int64), attributes=attributes)


class PlantedModule(nn.Module):
    """A "generator" whose image is bright on top iff z . u_top > 0 and red on the left iff z . u_left > 0 (smoothly)."""

    truncates_latent = False

    def __init__(self, z_dim: int, size: int, u_top: torch.Tensor, u_left: torch.Tensor) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("u_top", u_top / u_top.norm())
        self.register_buffer("u_left", u_left / u_left.norm())
        self.anchor = nn.Parameter(torch.zeros(1))  # render() looks up the device of a parameter

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        size, half = self.size, self.size // 2
        top = torch.sigmoid(3 * z @ self.u_top).view(-1, 1, 1)  # (N, 1, 1)
        left = torch.sigmoid(3 * z @ self.u_left).view(-1, 1, 1)
        image = torch.full((len(z), 3, size, size), -0.4) + 0.0 * self.anchor
        image[:, :, :half, :] = image[:, :, :half, :] + 0.95 * top.unsqueeze(1)
        image[:, 0, :, :half] = image[:, 0, :, :half] + 0.8 * left
        # A faint z-dependent texture, so two latents never give one image (identity drift is measurable).
        texture = torch.tanh(z[:, : size * size].view(-1, 1, size, size)) * 0.05 if z.shape[1] >= size * size else 0.0
        return (image + texture).clamp(-1, 1)


def planted_generator(z_dim: int = 32, size: int = 16, seed: int = 0):
    """A facegan Generator around PlantedModule, with its two true directions (unit vectors)."""
    from facegan.models.config import ModelConfig
    from facegan.models.export import Generator

    gen = torch.Generator().manual_seed(seed)
    u_top, u_left = torch.randn(z_dim, generator=gen), torch.randn(z_dim, generator=gen)
    # Correlate the two truths on purpose (cosine ~0.5), so conditioning has something to remove.
    u_left = u_left / u_left.norm() + u_top / u_top.norm()
    module = PlantedModule(z_dim, size, u_top, u_left)
    config = ModelConfig(z_dim=z_dim, resolution=size, channels=3)
    return Generator(module, config), module.u_top.clone(), module.u_left.clone()


class PlantedClassifier:
    """Scores the planted attributes straight from the pixels (no training): logit = brightness margin."""

    attribute_names = list(NAMES)
    key = "planted"

    def logits(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        images = np.asarray(images, np.float64)
        half = images.shape[1] // 2
        top = images[:, :half].mean((1, 2, 3)) - images[:, half:].mean((1, 2, 3)) - 60.0
        left = images[:, :, :half, 0].mean((1, 2)) - images[:, :, half:, 0].mean((1, 2)) - 50.0
        noise = np.zeros(len(images))
        return (np.stack([top, left, noise], 1) / 10.0).astype(np.float32)

    def scores(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return (1 / (1 + np.exp(-self.logits(images).astype(np.float64)))).astype(np.float32)

    def index(self, attribute: str) -> int:
        return self.attribute_names.index(attribute)


def tiny_export(folder, dataset_path=None, size: int = 16, z_dim: int = 16, seed: int = 0):
    """A stand-alone export of an untrained tiny `stable` generator (its images still vary with z)."""
    from facegan.models import build_generator
    from facegan.models.config import ModelConfig
    from facegan.models.export import save_export

    config = ModelConfig(z_dim=z_dim, resolution=size, channels=3, g_channels=16, d_channels=16, min_channels=8)
    torch.manual_seed(seed)
    metadata = {"dataset": str(dataset_path)} if dataset_path is not None else {}
    return save_export(folder, build_generator(config), config, metadata)


def fast_classifier(monkeypatch) -> None:
    """`facegan edit` trains its classifier with these tiny settings in tests (seconds, not minutes)."""
    import functools

    import facegan.editing.classifier as classifier_module

    monkeypatch.setattr(classifier_module, "ClassifierSettings",
                        functools.partial(classifier_module.ClassifierSettings, steps=40, batch_size=32, width=8))


def edit_setup(tmp_path, monkeypatch):
    """(export folder whose recorded training data is a planted labelled dataset, that dataset's folder)."""
    fast_classifier(monkeypatch)
    data = planted_dataset(count=120).save(tmp_path / "data")
    return tiny_export(tmp_path / "export", dataset_path=data), data
