"""Training data with a fingerprint in it: where `train --fingerprint` keeps the encoded copy, and its reuse.

A generator trained on fingerprinted images reproduces the key (Yu et al. 2021); the copy sits beside
the original dataset as `DATASET-fp<id8>` so runs that use the same data and fingerprint share it,
and is rebuilt only when it is missing. The export then records the fingerprint (training.loop reads
the dataset's manifest), so every image the generator makes names it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from facegan.errors import FaceganError


def fingerprinted_path(dataset_path: str | os.PathLike, fingerprint_id: str) -> Path:
    """Where the fingerprinted copy of a dataset lives: beside it, named by the fingerprint's id."""
    folder = Path(os.path.abspath(dataset_path))
    return folder.parent / f"{folder.name}-fp{fingerprint_id[:8]}"


def ensure_fingerprinted(dataset: Any, fingerprint: Any, out: str | os.PathLike | None = None) -> "FaceDataset":  # noqa: F821
    """The dataset with every image encoded by `fingerprint`, reusing an earlier copy made from the same
    images with the same fingerprint; refuses a dataset that already carries a (different) fingerprint."""
    from facegan.data.dataset import MANIFEST_NAME, FaceDataset
    from facegan.fingerprint.fingerprint import fingerprint_dataset, resolve_fingerprint

    fingerprint = resolve_fingerprint(fingerprint)
    if not isinstance(dataset, FaceDataset):
        dataset = FaceDataset.load(dataset)
    carried = dataset.manifest.get("fingerprint")
    if isinstance(carried, dict) and carried.get("id"):
        if carried["id"] == fingerprint.id:
            return dataset  # already fingerprinted with this key: nothing to do
        raise FaceganError(f"{dataset.path} already carries fingerprint {str(carried['id'])[:16]}; give the unmarked dataset "
                           "(two keys in one image would weaken both)")
    if dataset.path is None:
        raise FaceganError("fingerprint a saved dataset (FaceDataset.save first), so the copy can be found again")
    target = Path(out) if out is not None else fingerprinted_path(dataset.path, fingerprint.id)
    if (target / MANIFEST_NAME).is_file():
        try:
            existing = FaceDataset.load(target)
        except FaceganError:
            existing = None
        if (existing is not None and (existing.manifest.get("fingerprint") or {}).get("id") == fingerprint.id
                and existing.manifest.get("parent_hash") == dataset.content_hash):
            return existing
    return fingerprint_dataset(dataset, fingerprint, target)
