"""Shared fixtures: tiny real-face datasets and tiny model configs, all CPU and seeded."""
from __future__ import annotations

import os

import numpy as np
import pytest

# One thread per test process: the suite runs under xdist on 2 cores, and determinism tests compare runs.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    """In the xdist controller (or a plain run), import ART once before any worker does: on a fresh home its
    `art.config` writes ~/.art/config.json at import, and two workers doing that at once can leave one of them
    with a NameError (seen on a fresh machine: the collection of tests/attacks/test_reference_parity.py failed)."""
    import importlib.util

    if not hasattr(config, "workerinput") and importlib.util.find_spec("art") is not None:
        import art.config  # noqa: F401


def _builtin_faces(size: int) -> np.ndarray:
    from PIL import Image
    from skimage import data

    faces = (data.lfw_subset()[:100] * 255).round().astype(np.uint8)  # (100, 25, 25): the real faces
    return np.stack([np.asarray(Image.fromarray(face).resize((size, size), Image.BICUBIC)) for face in faces])[..., None]


@pytest.fixture(scope="session")
def faces16(tmp_path_factory):
    """100 real LFW faces, 16x16 gray, saved as a prepared dataset."""
    from facegan.data.dataset import FaceDataset

    path = tmp_path_factory.mktemp("data") / "faces16"
    FaceDataset(_builtin_faces(16), {"source": "test:lfw16", "source_kind": "builtin"}).save(path)
    return path


@pytest.fixture(scope="session")
def faces32(tmp_path_factory):
    """100 real LFW faces, 32x32 gray (the smallest resolution of the DCGAN recipe)."""
    from facegan.data.dataset import FaceDataset

    path = tmp_path_factory.mktemp("data") / "faces32"
    FaceDataset(_builtin_faces(32), {"source": "test:lfw32", "source_kind": "builtin"}).save(path)
    return path


TINY_STABLE = {
    "model": {"g_channels": 16, "d_channels": 16, "min_channels": 8},
    "batch_size": 8,
    "schedule": {"log_kimg": 0.016, "snapshot_kimg": 0.032, "checkpoint_kimg": 0.032, "num_snapshot_images": 4},
    "runtime": {"tensorboard": False, "num_threads": 1},
}
TINY_DCGAN = {
    "model": {"g_channels": 32, "d_channels": 32},
    "batch_size": 8,
    "schedule": {"log_kimg": 0.016, "snapshot_kimg": 0.032, "checkpoint_kimg": 0.032, "num_snapshot_images": 4},
    "runtime": {"tensorboard": False, "num_threads": 1},
}


@pytest.fixture
def tiny_config():
    """Factory: a tiny, fast TrainConfig for a dataset and run folder."""
    from facegan.config import merge
    from facegan.training.config import resolve_config

    def make(data, out, preset="default", kimg=0.064, **updates):
        base = TINY_DCGAN if preset == "seed-dcgan" else TINY_STABLE
        config = resolve_config(preset, {**base, "data": str(data), "out": str(out), "kimg": kimg})
        return merge(config, updates) if updates else config

    return make
