"""Shared helpers for the metric tests: a tiny random feature extractor and a tiny trained model."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from facegan.metrics.features import register_extractor

PROJECTION_NAME = "test-projection"


class ProjectionExtractor:
    """A fixed random projection of 4x4 block-averaged pixels: uint8 (N, H, W, C) -> float32 (N, 8).

    Deterministic per image (so batch size cannot matter), fast, and counts its calls so tests can
    prove that cached real features are not recomputed.
    """

    name = PROJECTION_NAME
    version = "1"
    dim = 8

    def __init__(self) -> None:
        self.num_calls = 0
        self.num_images = 0

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        self.num_calls += 1
        self.num_images += len(images)
        images = np.asarray(images, dtype=np.float64) / 255.0  # (N, H, W, C)
        count, height, width, channels = images.shape
        blocks = images.reshape(count, 4, height // 4, 4, width // 4, channels).mean(axis=(2, 4))  # (N, 4, 4, C)
        weights = np.random.default_rng(1234).standard_normal((16 * channels, self.dim))  # (16C, 8), fixed
        return np.tanh(blocks.reshape(count, -1) @ weights).astype(np.float32)  # (N, 8)


def register_projection() -> list[ProjectionExtractor]:
    """Register the projection extractor; returns the list every built instance is appended to."""
    built: list[ProjectionExtractor] = []

    def factory(**options) -> ProjectionExtractor:
        extractor = ProjectionExtractor()
        built.append(extractor)
        return extractor

    register_extractor(PROJECTION_NAME, factory, "4x4 block means, fixed random projection (test only)")
    return built


def train_tiny_run(data: Path, out: Path) -> Path:
    """A tiny generator trained for 32 images on `data` (about 2 s on CPU); returns the run folder."""
    from facegan.training.config import resolve_config
    from facegan.training.loop import train
    from tests.conftest import TINY_STABLE

    config = resolve_config("default", {**TINY_STABLE, "data": str(data), "out": str(out), "kimg": 0.032})
    train(config, progress=False)
    return out
