"""A tiny fingerprint codec (16 px grey, 16 bits) trained once for the whole fingerprint test package."""
from __future__ import annotations

import pytest

# Small enough to train in a few seconds on one core, large enough to read its bits well above chance;
# with the null loss and weakened residuals on, so those branches of the training are exercised too.
TINY_CODEC = {"bits": 16, "encoder_width": 16, "decoder_width": 16, "key_channels": 4, "steps": 300, "batch_size": 32,
              "lr": 0.003, "target_psnr": 26.0, "null_weight": 1.0, "min_strength": 0.3, "log_every": 50, "pattern_grid": 8}


@pytest.fixture(scope="session")
def tiny_fingerprint_path(faces16, tmp_path_factory):
    from facegan.fingerprint import FingerprintConfig, train_fingerprint

    path = tmp_path_factory.mktemp("fingerprint") / "fp16"
    train_fingerprint(faces16, path, FingerprintConfig(**TINY_CODEC), seed=0)
    return path


@pytest.fixture(scope="session")
def tiny_fingerprint(tiny_fingerprint_path):
    from facegan.fingerprint import load_fingerprint

    return load_fingerprint(tiny_fingerprint_path)


@pytest.fixture(scope="session")
def faces16_images(faces16):
    import numpy as np

    from facegan.data.dataset import FaceDataset

    return np.array(FaceDataset.load(faces16).images)
