"""Shared fixtures for the robustness tests: a tiny trained recogniser and identity pairs (CPU, seconds)."""
from __future__ import annotations

import pytest

from tests.recognition.helpers import save_identity_dataset, write_pairs

TINY_RECOGNISER = {"backbone": {"width": 8, "embedding_size": 16, "blocks": [1, 1, 1, 1]}, "batch_size": 16,
                   "optimizer": {"warmup_steps": 2}, "runtime": {"tensorboard": False, "device": "cpu"},
                   "schedule": {"log_steps": 10}, "calibration_images": 4, "steps": 60}


@pytest.fixture(scope="session")
def identity_dataset(tmp_path_factory):
    """12 LFW identities x 6 jittered 32 px grey images (tests/recognition/helpers.py)."""
    return save_identity_dataset(tmp_path_factory.mktemp("robustness") / "identities", with_paths=True)


@pytest.fixture(scope="session")
def identity_pairs(identity_dataset):
    """LFW-format pairs over the identities: 3 folds of 4 same + 4 different pairs."""
    return write_pairs(identity_dataset.parent / "pairs.txt", num_folds=3, per_fold=4)


@pytest.fixture(scope="session")
def tiny_recogniser_run(identity_dataset):
    """A `facegan recog train` run of a tiny recogniser on the identities (seconds on a CPU)."""
    from facegan.config import from_dict
    from facegan.recognition.config import RecogConfig
    from facegan.recognition.training import train_recogniser

    out = identity_dataset.parent / "recogniser"
    config = from_dict(RecogConfig, {**TINY_RECOGNISER, "data": [str(identity_dataset)], "out": str(out)})
    return train_recogniser(config).run_dir
