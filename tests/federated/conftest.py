"""Tiny client datasets and federated settings (CPU, seeded) shared by the federated tests."""
from __future__ import annotations

import pytest

TINY = ["model.g_channels=16", "model.d_channels=16", "model.min_channels=8", "runtime.num_threads=1", "runtime.tensorboard=false"]


@pytest.fixture(scope="session")
def clients2(faces16, tmp_path_factory):
    """The 100 faces split IID over two clients."""
    from facegan.data.partition import partition_dataset

    out = tmp_path_factory.mktemp("partitions") / "two"
    partition_dataset(faces16, out, 2, by="iid", seed=0)
    return out


@pytest.fixture(scope="session")
def clients3(faces16, tmp_path_factory):
    from facegan.data.partition import partition_dataset

    out = tmp_path_factory.mktemp("partitions") / "three"
    partition_dataset(faces16, out, 3, by="iid", seed=0)
    return out


@pytest.fixture
def tiny_settings():
    from facegan.federated.engine import build_settings

    def make(partitions, out, rounds=2, local_kimg=0.016, **options):
        options.setdefault("batch_size", 8)
        overrides = TINY + options.pop("overrides", [])
        return build_settings(partitions, out, rounds, local_kimg, overrides=overrides, **options)

    return make
