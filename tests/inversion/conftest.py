"""Fixtures of the projection tests."""
from __future__ import annotations

import pytest

from tests.inversion.helpers import make_tiny_export


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    return make_tiny_export(tmp_path_factory.mktemp("export") / "export")
