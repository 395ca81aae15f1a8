"""`facegan train --init-from RUN`: warm-start G and D from a model trained on other (public) data.

The standard remedy for DP training that makes no faces is DP fine-tuning of a publicly pretrained
model. The guarantee only holds if the public data holds none of the private images, so the source
run's dataset is compared with this run's image by image (sha256 of each uint8 image) and any
overlap is refused. The source must be a run folder with a checkpoint (G, its EMA and D); its
dataset must still be where its run_info says.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan.run import Run
from facegan.training.checkpoint import load_state
from facegan.training.extensions import TrainerExtension

if TYPE_CHECKING:
    from facegan.training.loop import Trainer


def image_hashes(images: np.ndarray, chunk: int = 4096) -> set[str]:
    """sha256 of every image's uint8 bytes (read in chunks, so a memmap is never copied whole)."""
    hashes: set[str] = set()
    for start in range(0, len(images), chunk):
        for image in np.asarray(images[start:start + chunk]):
            hashes.add(hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest())
    return hashes


def resolve_source(path: str | os.PathLike) -> Run:
    """The run folder --init-from names (a run, or its export/ folder), with a checkpoint to take G and D from."""
    given = Path(path).expanduser()
    if not given.exists():
        raise FaceganError(f"--init-from {path}: no such run")
    if given.is_file() or not given.is_dir():
        raise FaceganError(f"--init-from {path} is not a folder; pass a run folder (made by `facegan train`)")
    run = Run(given)
    if not run.is_run():
        parent = Run.containing(given)
        if parent is None:
            raise FaceganError(f"--init-from {path} is not a facegan run (a stand-alone export has no discriminator and no record "
                               "of its training data); pass the run folder it came from")
        run = parent
    if not run.has_checkpoint():
        raise FaceganError(f"--init-from {path}: the run has no checkpoint yet (its G and D are saved at the first checkpoint)")
    return run


def check_disjoint(source: Run, private: FaceDataset) -> dict[str, Any]:
    """Refuse a source trained on any of `private`'s images; returns what was checked (for the record)."""
    info = source.read_run_info() or {}
    data_path = info.get("dataset_path")
    if not isinstance(data_path, str) or not data_path:
        raise FaceganError(f"--init-from {source.path}: its run_info names no dataset, so disjointness cannot be checked")
    if not Path(data_path).exists():
        raise FaceganError(f"--init-from {source.path}: its training data {data_path} is gone, so disjointness from the private "
                           "data cannot be checked; put it back or pretrain again")
    public = FaceDataset.load(data_path)
    if info.get("dataset_hash") not in (None, public.content_hash):
        raise FaceganError(f"--init-from {source.path}: {data_path} changed since that run trained on it; disjointness cannot be checked")
    overlap = len(image_hashes(public.images) & image_hashes(private.images))
    if overlap:
        raise FaceganError(f"--init-from {source.path}: its training data shares {overlap} images with this run's data; "
                           "the public model must be trained on data disjoint from the private set")
    return {"path": str(source.path.resolve()), "dataset_path": data_path, "dataset_hash": public.content_hash,
            "dataset_images": len(public), "overlap_images": 0}


class InitRecord(TrainerExtension):
    """Carries what the run was initialised from into every export's config.json."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record

    def export_metadata(self, trainer: "Trainer") -> dict[str, Any]:
        return {"init_from": self.record}


def initialise_from(trainer: "Trainer", source_path: str | os.PathLike, private: FaceDataset) -> dict[str, Any]:
    """Load the source run's G (and EMA) and D into `trainer` after checking the data are disjoint; returns the record."""
    source = resolve_source(source_path)
    record = check_disjoint(source, private)
    state = load_state(source.state_path)
    try:
        trainer.G.load_state_dict(state["G"])
        trainer.D.load_state_dict(state["D"])
        if trainer.G_ema is not None:
            trainer.G_ema.load_state_dict(state.get("G_ema", state["G"]))
    except (KeyError, RuntimeError) as error:
        raise FaceganError(f"--init-from {source_path}: its networks do not match this run's architecture "
                           f"({str(error).splitlines()[0][:160]}); pretrain with the same --preset and model settings (--preset dp for DP fine-tuning)") from None
    record["source_kimg"] = round(int(state["num_images_seen"]) / 1000, 3)
    trainer.extensions.append(InitRecord(record))
    return record
