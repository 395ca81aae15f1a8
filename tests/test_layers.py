"""The package layers hold: import-linter's contract (pyproject.toml) passes, no two packages import
each other (lazy imports included), and only `facegan.faces` touches dlib."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _graph(include_external_packages: bool = False):
    sys.path.insert(0, str(SRC))  # grimp finds the package the way Python would
    try:
        return grimp.build_graph("facegan", include_external_packages=include_external_packages, cache_dir=None)
    finally:
        sys.path.remove(str(SRC))


def _top(module: str) -> str | None:
    """facegan.metrics.kid -> metrics; the root package itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "facegan" else None


def test_the_layers_contract_holds():
    import os

    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())", "--no-cache"], cwd=ROOT, env=environment,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    assert "1 kept, 0 broken" in completed.stdout


def test_no_package_imports_one_that_imports_it_back():
    graph = _graph()
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        here = _top(module)
        if here is None:
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            there = _top(imported)
            if there is not None and there != here:
                edges.setdefault(here, set()).add(there)

    cycles = []

    def walk(start: str, node: str, trail: list[str]) -> None:
        for following in sorted(edges.get(node, ())):
            if following == start:
                cycles.append(" -> ".join(trail + [start]))
            elif following not in trail and following > start:  # each cycle once, from its smallest package
                walk(start, following, trail + [following])

    for start in sorted(edges):
        walk(start, start, [start])
    assert cycles == []


# data.decode runs dlib's libjpeg only as a second JPEG decoder, to hear the corrupt-data warnings Pillow
# swallows; that is file decoding, not face tooling.
DLIB_IMPORTERS_OUTSIDE_FACES = {"facegan.data.decode"}


def test_only_the_faces_package_imports_dlib_for_faces():
    graph = _graph(include_external_packages=True)
    importers = {module for module in graph.find_modules_that_directly_import("dlib") if module.startswith("facegan.")}
    face_tooling = importers - DLIB_IMPORTERS_OUTSIDE_FACES
    assert face_tooling and all(module.startswith("facegan.faces.") for module in face_tooling), sorted(importers)
