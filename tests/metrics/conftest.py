"""Fixtures for the metric tests: an isolated feature cache and the tiny projection extractor."""
from __future__ import annotations

import pytest

from facegan.metrics.features import unregister_extractor
from tests.metrics.helpers import PROJECTION_NAME, register_projection


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """FACEGAN_CACHE_DIR pointed at a fresh folder, so no test sees another's (or the user's) cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("FACEGAN_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def projection():
    """Register the 'test-projection' extractor; yields the list of instances built through the registry."""
    built = register_projection()
    yield built
    unregister_extractor(PROJECTION_NAME)
