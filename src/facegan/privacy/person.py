"""Is this one person in the training set? The identity-leakage audit for a single face.

`facegan audit` asks whether a model's samples re-identify training people *on average*; this asks it
for one face a person brings (`facegan serve`'s "Is my face in the training set?" tab): the closest
training faces in pixel space and in dlib's face space, whether the closest is within the recogniser's
match threshold, and the closest of N generated faces, with the reading in one sentence. The same
spaces, distances and match rule as the audit (facegan.privacy.audit).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan.faces.detection import FaceDetector
from facegan.privacy.audit import _face_descriptors, _face_recogniser
from facegan.privacy.audit_metrics import nearest_distances

DEFAULT_NUM_SAMPLES = 200
MAX_NUM_SAMPLES = 5000


@dataclass
class PersonCheck:
    """The closest faces to one person: rows are (index or seed, distance), nearest first."""

    face: np.ndarray  # uint8 (H, W, C): the person's face as the training images are stored
    pixel: list[tuple[int, float]]  # training rows, Euclidean distance of pixels in [0, 1] units (as the audit)
    face_space: list[tuple[int, float]]  # training rows, dlib descriptor distance
    generated: list[tuple[int, float]]  # seeds of generated faces dlib detects as faces, dlib descriptor distance
    threshold: float  # dlib's match threshold: closer = the same person
    num_train: int
    num_samples: int
    num_generated_faces: int = 0  # of the samples, those in which dlib's detector finds a face (only they can show a person)

    @property
    def in_training_set(self) -> bool:
        return bool(self.face_space) and self.face_space[0][1] < self.threshold

    @property
    def generated_match(self) -> bool:
        return bool(self.generated) and self.generated[0][1] < self.threshold

    @property
    def reading(self) -> str:
        """The verdict in one sentence."""
        index, distance = self.face_space[0]
        if self.in_training_set:
            sentence = (f"Training face #{index} is within dlib's match threshold of yours ({distance:.3f} < {self.threshold:g}): "
                        f"the training set may hold you, or someone dlib cannot tell from you at {self.face.shape[0]} px")
        else:
            sentence = (f"No training face is within dlib's match threshold of yours (closest: #{index} at {distance:.3f}, "
                        f"threshold {self.threshold:g}), so as far as dlib can tell you are not among these {self.num_train} faces")
        if self.num_samples and not self.generated:
            sentence += f"; dlib finds a face in none of {self.num_samples} generated faces, so none can show you"
        elif self.generated:
            seed, generated_distance = self.generated[0]
            verdict = "matches you" if self.generated_match else "does not match you"
            sentence += (f"; the closest of the {self.num_generated_faces} generated faces dlib finds (of {self.num_samples}; seed {seed}, {generated_distance:.3f}) {verdict}")
        return sentence + "."


def _neighbours(query: np.ndarray, references: np.ndarray, count: int, scale: float) -> list[tuple[int, float]]:
    count = min(count, len(references))
    distances, indices = nearest_distances(query[None], references, k=count, scale=scale)  # (1, k) each
    return [(int(index), float(distance)) for index, distance in zip(indices[0], distances[0])]


def check_person(face: np.ndarray, train: FaceDataset | str | os.PathLike, generator=None, num_samples: int = DEFAULT_NUM_SAMPLES,
                 num_closest: int = 4, device: str = "cpu") -> PersonCheck:
    """The closest training faces (pixel and face space) and generated faces (seeds 0..num_samples-1) to one face.

    `face` is uint8 (H, W, C) in the training set's own format (size and channels), e.g. from
    `facegan.data.pipeline.prepare_image(photo, size, align="dlib", channels=...)`.
    """
    train = train if isinstance(train, FaceDataset) else FaceDataset.load(train)
    images = np.asarray(train.images)
    face = np.asarray(face)
    if face.dtype != np.uint8 or face.shape != images.shape[1:]:
        raise FaceganError(f"the face is {face.shape} {face.dtype}, but the training images are {images.shape[1:]} uint8; "
                           "prepare it at the training set's size and channels")
    if len(images) == 0:
        raise FaceganError("the training set is empty")
    if generator is not None and not 1 <= int(num_samples) <= MAX_NUM_SAMPLES:
        raise FaceganError(f"the number of generated faces must be from 1 to {MAX_NUM_SAMPLES}, got {num_samples}")
    flat = lambda batch: np.asarray(batch).reshape(len(batch), -1)  # noqa: E731 - uint8 rows, as the audit's pixel space
    pixel = _neighbours(flat(face[None])[0], flat(images), num_closest, 1.0 / 255.0)
    threshold = _face_recogniser(device).match.threshold
    person = _face_descriptors(face[None], device)[0]  # (128,)
    face_space = _neighbours(person, _face_descriptors(images, device, train.content_hash), num_closest, 1.0)
    generated: list[tuple[int, float]] = []
    count = 0
    if generator is not None:
        count = int(num_samples)
        if (generator.resolution, generator.resolution, generator.channels) != face.shape:
            raise FaceganError(f"the model makes {generator.resolution}x{generator.resolution}x{generator.channels} images, "
                               f"the training set holds {face.shape}; pick the model's own training set")
        samples = generator.sample(range(count))  # seeds 0..count-1: the faces `facegan sample --seeds 0-(N-1)` makes
        with FaceDetector() as detector:
            is_face = detector.detect(samples)  # (N,) bool: the audit's rule, a blob near the mean descriptor is no one
        seeds = np.flatnonzero(is_face)
        if len(seeds):
            generated = [(int(seeds[row]), distance) for row, distance in
                         _neighbours(person, _face_descriptors(samples[seeds], device), num_closest, 1.0)]
    return PersonCheck(face, pixel, face_space, generated, float(threshold), len(images), count, int(is_face.sum()) if count else 0)
