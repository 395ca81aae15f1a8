"""Controls for the privacy audit: stand-in "generators" whose right answer is known in advance.

A positive control replays training faces (it memorised everything) and must be flagged; a negative
control replays faces from neither the training nor the holdout set (it learned nothing about who was
in training) and must not be. Both are built from the 100 real faces that ship with scikit-image, so
tests and `benchmarks/privacy_audit_controls.py` need no download.

Audit a control on seeds 0..N-1 for its N faces (`ControlSets.num_samples`): each face once, like N
independent draws. Replaying 30 faces as 2000 samples would give 2000 samples that are really 30, and
every chance calculation that counts samples would then be overconfident (the negative control's
near-copy share would look significant when it is only the luck of 30 faces).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError

__all__ = ["ReplayGenerator", "ControlSets", "builtin_control_sets"]


class ReplayGenerator:
    """A "generator" with the `Generator.sample(seeds)` interface that returns the faces it was given.

    Seed s gives face s mod N plus Gaussian pixel noise (std `noise_std` grey levels) drawn from an RNG
    seeded by (seed, s), so an image depends only on its seed, as with a real generator. The noise keeps
    the copies from being byte-identical: an audit must catch near copies, not only exact ones.
    """

    def __init__(self, images: np.ndarray, noise_std: float = 2.0, seed: int = 0) -> None:
        images = np.asarray(images)
        if images.ndim != 4 or images.dtype != np.uint8 or len(images) == 0:
            raise FaceganError(f"ReplayGenerator needs uint8 (N, H, W, C) faces, got {images.dtype} {images.shape}")
        self.images = images
        self.noise_std = float(noise_std)
        self.seed = int(seed)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    def sample(self, seeds: Iterable[int], truncation: float = 1.0, batch_size: int = 64) -> np.ndarray:
        """uint8 (N, H, W, C): the stored face for each seed, with its own noise (truncation is ignored)."""
        seeds = [int(seed) for seed in seeds]
        if not seeds:
            raise FaceganError("no seeds given")
        out = np.empty((len(seeds), *self.images.shape[1:]), dtype=np.uint8)
        for row, seed in enumerate(seeds):
            face = self.images[seed % len(self.images)].astype(np.float64)
            if self.noise_std > 0:
                face += np.random.default_rng([self.seed, seed]).normal(0.0, self.noise_std, face.shape)
            out[row] = np.clip(np.rint(face), 0, 255).astype(np.uint8)
        return out


@dataclass
class ControlSets:
    """Three disjoint sets of real faces: what a model trained on, what it did not, and bystanders."""

    train: FaceDataset
    holdout: FaceDataset
    outside: FaceDataset

    def positive_control(self, noise_std: float = 2.0) -> ReplayGenerator:
        """Memorises: replays the training faces."""
        return ReplayGenerator(np.asarray(self.train.images), noise_std)

    def negative_control(self, noise_std: float = 2.0) -> ReplayGenerator:
        """Makes real faces of people in neither train nor holdout: nothing to reveal about membership."""
        return ReplayGenerator(np.asarray(self.outside.images), noise_std)

    def num_samples(self, control: ReplayGenerator) -> int:
        """Seeds 0..N-1 give each of the control's N faces exactly once."""
        return len(control.images)


def builtin_control_sets(size: int = 32, num_train: int = 40, num_holdout: int = 30, num_outside: int = 30, seed: int = 0) -> ControlSets:
    """The built-in 100 LFW faces (grey, bicubic to `size`), shuffled with `seed` and cut into three sets."""
    from facegan.data.builtin import load_builtin

    data = load_builtin("lfw-subset", size)
    total = num_train + num_holdout + num_outside
    if total > len(data.images):
        raise FaceganError(f"the built-in set has {len(data.images)} faces; {num_train} + {num_holdout} + {num_outside} asked for")
    dataset = FaceDataset(data.images, {"source": "builtin:lfw-subset", "source_kind": "builtin", "paths": data.paths})
    order = np.random.default_rng(seed).permutation(len(data.images))
    parts = np.split(order[:total], [num_train, num_train + num_holdout])
    train, holdout, outside = (dataset.subset(np.sort(part), split={"part": name, "seed": seed}) for part, name in zip(parts, ("train", "holdout", "outside")))
    return ControlSets(train, holdout, outside)
