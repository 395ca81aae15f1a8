"""Stand-ins for the synth tests until the identity-aware generator (idgan) and the pixel recogniser (verify) merge.

FakeIdentityGenerator: identity = a fixed 8x8 coloured pattern drawn from the identity seed, upsampled to
32 px; nuisance = a one-pixel shift, a brightness change and noise drawn from the nuisance seed. So
images of one identity are alike in (mean-centred) pixel space and different identities are not.
PixelRecogniser: mean-centred grey pixels, cosine distance, threshold 0.45.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from facegan.faces.match import MatchRule

SIZE = 32
CELLS = 8
PIXEL_RECOGNISER = "test-synth-pixel"


def identity_pattern(identity_seed: int) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8: the face of one identity, before nuisance."""
    coarse = np.random.default_rng([identity_seed, 7]).integers(0, 256, (CELLS, CELLS, 3))
    return np.kron(coarse, np.ones((SIZE // CELLS, SIZE // CELLS, 1))).astype(np.uint8)


def with_nuisance(face: np.ndarray, nuisance_seed: int) -> np.ndarray:
    rng = np.random.default_rng(nuisance_seed % 2**32)
    shifted = np.roll(face.astype(np.float64), int(rng.integers(0, 2)), axis=1)
    shifted = shifted * rng.uniform(0.9, 1.1) + rng.normal(0.0, 4.0, face.shape)
    return np.clip(np.rint(shifted), 0, 255).astype(np.uint8)


class FakeIdentityGenerator:
    """The idgan export API (identity_aware, sample_identity) on fixed patterns; `planted` maps identity seeds to faces."""

    identity_aware = True
    resolution = SIZE
    channels = 3

    def __init__(self, planted: dict[int, np.ndarray] | None = None, metadata: dict | None = None) -> None:
        self.planted = dict(planted or {})
        self.metadata = dict(metadata or {})
        self.calls: list[int] = []

    def sample_identity(self, identity_seed: int, nuisance_seeds: Sequence[int], truncation: float = 1.0) -> np.ndarray:
        self.calls.append(identity_seed)
        face = self.planted.get(identity_seed)
        if face is None:
            face = identity_pattern(identity_seed)
        return np.stack([with_nuisance(face, seed) for seed in nuisance_seeds])  # (K, H, W, C)


class PlainGenerator:
    identity_aware = False
    resolution = SIZE
    channels = 3
    metadata: dict = {}


class PixelRecogniser:
    name = PIXEL_RECOGNISER
    version = "1"
    dim = SIZE * SIZE
    match = MatchRule("cosine", 0.45)

    @property
    def threshold(self) -> float:
        return self.match.threshold

    def embed(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        grey = np.asarray(images, dtype=np.float32).mean(-1).reshape(len(images), -1)  # (N, H*W)
        grey -= grey.mean(1, keepdims=True)
        return grey / np.maximum(np.linalg.norm(grey, axis=1, keepdims=True), 1e-6)

    def distance(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return self.match.distance(first, second)

    def same_person(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return self.match.same_person(first, second)


def training_faces(num_identities: int = 6, per_identity: int = 3, first_seed: int = 1000):
    """A labelled FaceDataset of 'training people' (identity seeds first_seed, first_seed + 1, ...)."""
    from facegan.data.dataset import FaceDataset

    images = np.stack([
        with_nuisance(identity_pattern(first_seed + person), 50_000 + person * per_identity + index)
        for person in range(num_identities) for index in range(per_identity)
    ])
    identity = np.repeat(np.arange(num_identities, dtype=np.int64), per_identity)
    names = [f"t{person:03d}" for person in range(num_identities)]
    return FaceDataset(images, {"identity_names": names, "alignment": "none", "source": "test", "source_kind": "test"}, identity=identity)


def make_run(folder, train_path: str | None, train_hash: str | None = None, planted: dict | None = None, identity_aware: bool = True):
    """A run folder with a real (tiny, plain) export, and a loader that gives the fake identity-aware generator for it.

    Returns (run path, load_generator replacement) for monkeypatching facegan.models.export.load_generator.
    """
    import json
    from pathlib import Path

    import torch

    from facegan.models import ModelConfig, build_generator, save_export
    from facegan.run import Run

    run = Run(Path(folder))
    run.write_config({"data": train_path or ""})
    torch.manual_seed(0)
    config = ModelConfig(resolution=16, channels=3, g_channels=16, min_channels=8)
    metadata = {"dataset_hash": train_hash or "unknown"}
    if train_path:
        metadata["dataset"] = train_path
    save_export(run.export_dir, build_generator(config), config, metadata)

    def load_generator(path, device="cpu"):
        saved = json.loads((Path(path) / "config.json").read_text()) if (Path(path) / "config.json").is_file() else {}
        if not identity_aware:
            generator = PlainGenerator()
            generator.metadata = saved
            return generator
        return FakeIdentityGenerator(planted=planted, metadata={key: value for key, value in saved.items() if key != "model"})

    return run.path, load_generator
