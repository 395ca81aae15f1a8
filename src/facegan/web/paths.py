"""The one door from a request to the file system: names under the `--runs` and `--data` roots, nothing else.

Every run, export or dataset a browser names is a path *relative to a root* (as the UI's drop-downs list
them); `Roots.resolve` refuses an absolute path, a `..` step, a NUL byte, and anything that leaves its
root once links are followed, before any file is opened. Core-only: no torch, no gradio.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from facegan.errors import FaceganError

# How deep the listings look for runs and datasets below a root (runs/demo/recognition/recogniser is 3).
MAX_DEPTH = 4
# Folders never listed: facegan's own inside runs, and hidden ones.
_SKIP_FOLDERS = frozenset({"checkpoints", "samples", "tensorboard", "federated", "rounds", "attacks", "editing", "export-best"})


@dataclass(frozen=True)
class Roots:
    """The folders a web session may name: runs (read and train into) and prepared datasets (read)."""

    runs: Path
    data: Path

    @classmethod
    def create(cls, runs: str | os.PathLike, data: str | os.PathLike | None = None) -> "Roots":
        runs_path = Path(runs).expanduser().resolve()
        data_path = Path(data).expanduser().resolve() if data is not None else runs_path
        for option, path in (("--runs", runs_path), ("--data", data_path)):
            if not path.is_dir():
                raise FaceganError(f"{option} {path} is not a folder; give the folder that holds your runs (e.g. runs/)")
        return cls(runs_path, data_path)

    def root(self, kind: str) -> Path:
        if kind not in ("runs", "data"):
            raise ValueError(f"unknown root {kind!r}")
        return self.runs if kind == "runs" else self.data

    def resolve(self, kind: str, name: str | None, must_exist: bool = True) -> Path:
        """`name` (relative to the root of `kind`) -> an absolute path inside that root, or one FaceganError."""
        root = self.root(kind)
        what = "run" if kind == "runs" else "dataset"
        if not isinstance(name, str) or not name.strip():
            raise FaceganError(f"no {what} chosen; pick one from the list")
        if "\x00" in name or len(name) > 1024:
            raise FaceganError(f"{what} name refused: not a plain name; pick one from the list")
        relative = Path(name)
        if relative.is_absolute() or name.startswith(("/", "\\", "~")):
            raise FaceganError(f"{what} '{name}' refused: absolute paths are not accepted; pick a {what} under {root.name}/")
        if any(part == ".." for part in relative.parts):
            raise FaceganError(f"{what} '{name}' refused: '..' is not accepted; pick a {what} under {root.name}/")
        path = (root / relative).resolve()
        if path != root and root not in path.parents:  # a link that points out of the root
            raise FaceganError(f"{what} '{name}' refused: it leads outside {root.name}/")
        if must_exist and not path.exists():
            raise FaceganError(f"no {what} '{name}' under {root.name}/; pick one from the list")
        return path

    def relative(self, kind: str, path: Path) -> str:
        """The name the UI shows and sends back for `path` (inside the root of `kind`)."""
        return path.relative_to(self.root(kind)).as_posix()

    def folders(self, kind: str, keep) -> list[str]:
        """Names of the folders under a root (to MAX_DEPTH, links inside the root only) for which keep(path) holds."""
        root = self.root(kind)
        found: list[str] = []

        def walk(folder: Path, depth: int) -> None:
            try:
                entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
            except OSError:
                return
            for entry in entries:
                if entry.name.startswith(".") or entry.name in _SKIP_FOLDERS or not entry.is_dir():
                    continue
                path = Path(entry.path)
                resolved = path.resolve()
                if resolved != root and root not in resolved.parents:
                    continue
                if keep(path):
                    found.append(self.relative(kind, path))
                elif depth < MAX_DEPTH:
                    walk(path, depth + 1)

        walk(root, 1)
        return found
